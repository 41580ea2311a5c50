"""Recipe YAML schema: malformed files are rejected with file, key and reason; shipped recipes;
section hashes that change only when the values a downstream step reads change."""

from pathlib import Path

import pytest

from mm_assets.steps import STEP_BY_KIND
from mm_assets.recipes.schema import Recipe, RecipeError, load_recipe, load_recipes, parse_recipe
from mm_assets.recipes.sections import SECTIONS, section_versions

REPO_ROOT = Path(__file__).resolve().parent.parent
SHIPPED = REPO_ROOT / "recipes"

OK_STEP = "steps:\n  - semdedup: {target_removal: 0.1}\n"


# --------------------------------------------------------------------------------------------
# Malformed recipes: (file name, content, offending key or None, reason phrases)
# --------------------------------------------------------------------------------------------

MALFORMED = [
    # top level
    pytest.param("unknown_top.yaml", "description: x\nstep:\n  - semdedup: {target_removal: 0.1}\n",
                 "step", ["unknown key", "allowed"], id="unknown-top-level-key"),
    pytest.param("bad_yaml.yaml", "steps: [semdedup: {target_removal: 0.1}\n", None,
                 ["not valid YAML"], id="invalid-yaml-syntax"),
    pytest.param("tab_yaml.yaml", "steps:\n\t- semdedup: {target_removal: 0.1}\n", None,
                 ["not valid YAML"], id="tab-indentation"),
    pytest.param("top_list.yaml", "- semdedup: {target_removal: 0.1}\n", None,
                 ["a recipe is a mapping", "got list"], id="top-level-list"),
    pytest.param("top_scalar.yaml", "semdedup 10 percent\n", None,
                 ["a recipe is a mapping", "got str"], id="top-level-scalar"),
    pytest.param("Bad-Name.yaml", OK_STEP, None,
                 ["recipe name 'Bad-Name' must match", "file name"], id="bad-file-name"),
    pytest.param("9 lives.yaml", OK_STEP, None, ["recipe name '9 lives' must match"], id="file-name-with-space"),
    pytest.param("latin1.yaml", "description: d\xe9duplication \xe0 10 %\n".encode("latin-1") + OK_STEP.encode(),
                 None, ["not UTF-8 text"], id="non-utf8-bytes"),
    pytest.param("desc_list.yaml", "description: [semdedup]\n", "description",
                 ["must be a string", "got list"], id="description-not-a-string"),
    # steps container
    pytest.param("steps_map.yaml", "steps:\n  semdedup: {target_removal: 0.1}\n", "steps",
                 ["must be a list of steps", "got dict"], id="steps-not-a-list"),
    pytest.param("steps_str.yaml", "steps: semdedup\n", "steps",
                 ["must be a list of steps", "got str"], id="steps-a-string"),
    pytest.param("step_str.yaml", "steps:\n  - semdedup\n", "steps[0]",
                 ["exactly one key", "the step type"], id="step-a-bare-string"),
    pytest.param("step_indent.yaml", "steps:\n  - semdedup:\n    target_removal: 0.1\n", "steps[0]",
                 ["exactly one key"], id="step-params-not-indented"),
    pytest.param("step_two_keys.yaml", "steps:\n  - {semdedup: {target_removal: 0.1}, perplexity: {slice: low}}\n",
                 "steps[0]", ["exactly one key"], id="step-two-keys"),
    pytest.param("unknown_step.yaml", "steps:\n  - dedup: {target_removal: 0.1}\n", "steps[0]",
                 ["unknown step type 'dedup'", "known"], id="unknown-step-type"),
    pytest.param("twice.yaml", "steps:\n  - semdedup: {target_removal: 0.1}\n  - semdedup: {target_removal: 0.2}\n",
                 "steps[1].semdedup", ["step listed twice"], id="step-listed-twice"),
    pytest.param("params_scalar.yaml", "steps:\n  - semdedup: 0.1\n", "steps[0].semdedup",
                 ["parameters must be a mapping", "got float"], id="step-params-not-a-mapping"),
    # semdedup parameters
    pytest.param("typo.yaml", "steps:\n  - semdedup: {target_remval: 0.1}\n", "steps[0].semdedup.target_remval",
                 ["unknown key"], id="param-typo"),
    pytest.param("both.yaml", "steps:\n  - semdedup: {target_removal: 0.1, eps: 0.05}\n", "steps[0].semdedup",
                 ["give exactly one of target_removal and eps"], id="both-target-and-eps"),
    pytest.param("neither.yaml", "steps:\n  - semdedup: {clusters: auto, keep: hardest}\n", "steps[0].semdedup",
                 ["give exactly one of target_removal and eps"], id="neither-target-nor-eps"),
    pytest.param("empty_params.yaml", "steps:\n  - semdedup:\n", "steps[0].semdedup",
                 ["give exactly one of target_removal and eps"], id="step-without-params"),
    pytest.param("tr_big.yaml", "steps:\n  - semdedup: {target_removal: 1.5}\n",
                 "steps[0].semdedup.target_removal", ["less than 1", "got 1.5"], id="target-removal-1.5"),
    pytest.param("tr_one.yaml", "steps:\n  - semdedup: {target_removal: 1}\n",
                 "steps[0].semdedup.target_removal", ["less than 1", "got 1"], id="target-removal-1"),
    pytest.param("tr_zero.yaml", "steps:\n  - semdedup: {target_removal: 0}\n",
                 "steps[0].semdedup.target_removal", ["greater than 0", "got 0"], id="target-removal-0"),
    pytest.param("tr_neg.yaml", "steps:\n  - semdedup: {target_removal: -0.1}\n",
                 "steps[0].semdedup.target_removal", ["greater than 0", "got -0.1"], id="target-removal-negative"),
    pytest.param("tr_words.yaml", "steps:\n  - semdedup: {target_removal: ten percent}\n",
                 "steps[0].semdedup.target_removal", ["valid number", "'ten percent'"], id="target-removal-words"),
    pytest.param("tr_pct.yaml", "steps:\n  - semdedup: {target_removal: 10%}\n",
                 "steps[0].semdedup.target_removal", ["valid number", "'10%'"], id="target-removal-percent-sign"),
    pytest.param("tr_nan.yaml", "steps:\n  - semdedup: {target_removal: .nan}\n",
                 "steps[0].semdedup.target_removal", ["finite number"], id="target-removal-nan"),
    pytest.param("eps_big.yaml", "steps:\n  - semdedup: {eps: 5}\n",
                 "steps[0].semdedup.eps", ["less than 1", "got 5"], id="eps-out-of-range"),
    pytest.param("clusters0.yaml", "steps:\n  - semdedup: {target_removal: 0.1, clusters: 0}\n",
                 "steps[0].semdedup.clusters", ["integer ≥ 1", "got 0"],
                 id="clusters-0"),
    pytest.param("clusters_many.yaml", "steps:\n  - semdedup: {target_removal: 0.1, clusters: many}\n",
                 "steps[0].semdedup.clusters", ["'many'"], id="clusters-many"),
    pytest.param("keep.yaml", "steps:\n  - semdedup: {target_removal: 0.1, keep: oldest}\n",
                 "steps[0].semdedup.keep", ["'hardest', 'easiest' or 'random'", "got 'oldest'"], id="keep-oldest"),
    # other steps (validated before the availability check)
    pytest.param("mining_bench.yaml", "steps:\n  - mining: {k: 20, upsample: {mmmu: 2, chartqa: 2}}\n",
                 "steps[0].mining.upsample", ["unknown benchmark(s) ['mmmu']", "known"],
                 id="mining-unknown-benchmark"),
    pytest.param("mining_low.yaml", "steps:\n  - mining: {k: 20, upsample: {chartqa: 0.5}}\n",
                 "steps[0].mining.upsample.chartqa", ["greater than or equal to 1"], id="mining-upsample-below-1"),
    pytest.param("mining_k.yaml", "steps:\n  - mining: {upsample: {chartqa: 2}}\n",
                 "steps[0].mining.k", ["Field required"], id="mining-missing-k"),
    pytest.param("ppl_slice.yaml", "steps:\n  - perplexity: {slice: middle}\n",
                 "steps[0].perplexity.slice", ["'low', 'mid' or 'high'", "got 'middle'"], id="perplexity-bad-slice"),
    pytest.param("second_bad.yaml",
                 "steps:\n  - semdedup: {target_removal: 0.1}\n  - perplexity: {keep_fraction: 2}\n",
                 "steps[1].perplexity.keep_fraction", ["less than or equal to 1", "got 2"],
                 id="second-step-bad-value"),
    # domain weights
    pytest.param("dw_domain.yaml", OK_STEP + "domain_weights: {charts: 1.5}\n", "domain_weights.charts",
                 ["unknown domain", "known"], id="weight-unknown-domain"),
    pytest.param("dw_neg.yaml", OK_STEP + "domain_weights: {chart: -0.5}\n", "domain_weights.chart",
                 ["must be a number in [0, 100]", "got -0.5"], id="weight-negative"),
    pytest.param("dw_words.yaml", OK_STEP + "domain_weights: {chart: double}\n", "domain_weights.chart",
                 ["must be a number in [0, 100]", "got 'double'"], id="weight-non-numeric"),
    pytest.param("dw_quoted.yaml", OK_STEP + "domain_weights: {chart: '1.5'}\n", "domain_weights.chart",
                 ["must be a number in [0, 100]", "got '1.5'"], id="weight-quoted-number"),
    pytest.param("dw_bool.yaml", OK_STEP + "domain_weights: {chart: yes}\n", "domain_weights.chart",
                 ["must be a number in [0, 100]", "got True"], id="weight-yaml-bool"),
    pytest.param("dw_nan.yaml", OK_STEP + "domain_weights: {chart: .nan}\n", "domain_weights.chart",
                 ["must be a number in [0, 100]", "got nan"], id="weight-nan"),
    pytest.param("dw_huge.yaml", OK_STEP + "domain_weights: {chart: 1000}\n", "domain_weights.chart",
                 ["must be a number in [0, 100]", "got 1000"], id="weight-too-large"),
    pytest.param("dw_list.yaml", OK_STEP + "domain_weights: [chart, ocr]\n", "domain_weights",
                 ["must be a mapping", "got list"], id="weights-not-a-mapping"),
]


@pytest.mark.parametrize("filename, content, key, phrases", MALFORMED)
def test_malformed_recipe_is_rejected_with_file_key_and_reason(tmp_path, filename, content, key, phrases):
    path = tmp_path / filename
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    exc = info.value
    msg = str(exc)
    # a schema error, not "step not built yet"
    assert type(exc) is RecipeError, f"{type(exc).__name__}: {msg}"
    assert exc.path == str(path)
    assert msg.startswith(f"{path}: ")
    if key is None:
        assert exc.key == ""
    else:
        assert exc.key == key, msg
        assert f"{path}: {key}: " in msg
    for phrase in phrases:
        assert phrase in exc.reason, msg
        assert phrase in msg
    assert "\n" not in msg


def test_load_recipes_reports_each_file_separately(tmp_path):
    (tmp_path / "good.yaml").write_text(OK_STEP)
    (tmp_path / "bad.yaml").write_text("steps:\n  - semdedup: {target_remval: 0.1}\n")
    (tmp_path / "notes.txt").write_text("not a recipe")
    got = load_recipes(tmp_path)
    assert sorted(got) == ["bad", "good"]
    assert isinstance(got["good"], Recipe) and got["good"].name == "good"
    assert isinstance(got["bad"], RecipeError)
    assert "steps[0].semdedup.target_remval" in str(got["bad"])
    assert load_recipes(tmp_path / "missing") == {}


def test_valid_recipe_parses_to_values(tmp_path):
    path = tmp_path / "mix.yaml"
    path.write_text("description: test\nsteps:\n  - semdedup: {eps: 0.05, clusters: 40, keep: random}\n"
                    "domain_weights: {ocr: 2, chart: 0.5}\n")
    r = load_recipe(path)
    assert r.name == "mix" and r.description == "test"
    (kind, params), = r.steps
    assert kind == "semdedup"
    assert (params.eps, params.target_removal, params.clusters, params.keep) == (0.05, None, 40, "random")
    assert r.domain_weights == {"chart": 0.5, "ocr": 2.0}
    assert r.weight("ocr") == 2.0 and r.weight("general") == 1.0
    assert r.text == path.read_text()


def test_empty_file_is_a_recipe_without_steps(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing yet\n")
    r = load_recipe(path)
    assert r.steps == () and r.domain_weights == {}


@pytest.mark.parametrize("value", ["0", "-3", "many", "2.5"])
def test_bad_cluster_count_is_rejected(tmp_path, value):
    """Rejected with the field itself as the key and the rule in the reason."""
    path = tmp_path / "clusters.yaml"
    path.write_text(f"steps:\n  - semdedup: {{target_removal: 0.1, clusters: {value}}}\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert type(info.value) is RecipeError
    assert f"{path}: steps[0].semdedup.clusters" in str(info.value)
    assert f"(got {value}" in str(info.value) or f"(got '{value}'" in str(info.value)


# YAML traps: a repeated key must not silently win, a YAML bool is not a number.

@pytest.mark.parametrize("content", [
    "steps:\n  - semdedup: {target_removal: 0.1, target_removal: 0.2}\n",
    "steps:\n  - semdedup: {target_removal: 0.1}\nsteps: []\n",
], ids=["duplicate-param", "duplicate-steps"])
def test_duplicate_yaml_keys_are_rejected(tmp_path, content):
    path = tmp_path / "dup.yaml"
    path.write_text(content)
    with pytest.raises(RecipeError):
        load_recipe(path)


def test_yaml_bool_is_not_a_cluster_count(tmp_path):
    path = tmp_path / "boolclusters.yaml"
    path.write_text("steps:\n  - semdedup: {target_removal: 0.1, clusters: yes}\n")
    with pytest.raises(RecipeError, match=r"steps\[0\]\.semdedup\.clusters"):
        load_recipe(path)


# --------------------------------------------------------------------------------------------
# Shipped recipes
# --------------------------------------------------------------------------------------------

SHIPPED_NAMES = ("baseline", "semdedup10", "ppl_top50", "rephrase", "mining", "decontamination", "relevance", "v1",
                 "oracle")
STEP_OF = {"ppl_top50": "perplexity", "rephrase": "rephrase", "mining": "mining", "v1": "decontamination",
           "decontamination": "decontamination", "relevance": "relevance",
           "oracle": "oracle"}


@pytest.mark.parametrize("directory", ["study", "study/extra"])
def test_the_studys_recipes_load(directory):
    """What `make study` and `--extra` train: a recipe that does not load would only show as an
    error an hour into a study."""
    recipes = load_recipes(SHIPPED / directory)
    assert recipes and all(isinstance(r, Recipe) for r in recipes.values()), recipes


@pytest.mark.parametrize("name", SHIPPED_NAMES)
def test_shipped_recipes_load(name):
    r = load_recipe(SHIPPED / f"{name}.yaml")
    assert r.name == name
    assert all(kind in STEP_BY_KIND for kind, _ in r.steps)


def test_shipped_semdedup10_values():
    r = load_recipe(SHIPPED / "semdedup10.yaml")
    sd = r.step("semdedup")
    assert (sd.target_removal, sd.eps, sd.clusters, sd.keep) == (0.1, None, "auto", "hardest")
    assert load_recipe(SHIPPED / "baseline.yaml").steps == ()


@pytest.mark.parametrize("name, step", sorted(STEP_OF.items()))
def test_the_schema_knows_exactly_the_registered_steps(monkeypatch, name, step):
    """A step the registry does not list is an unknown step: the recipe is refused whole."""
    import mm_assets.steps as registry
    monkeypatch.setattr(registry, "STEPS", tuple(s for s in registry.STEPS if s.kind == "semdedup"))
    path = SHIPPED / f"{name}.yaml"
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    msg = str(info.value)
    assert f"unknown step type {step!r}" in msg and "known: ['semdedup']" in msg
    assert str(path) in msg


def test_shipped_directory():
    got = load_recipes(SHIPPED)
    assert set(got) == set(SHIPPED_NAMES)
    assert all(isinstance(r, Recipe) for r in got.values())


def test_v1_composition():
    r = load_recipe(SHIPPED / "v1.yaml")
    assert [k for k, _ in r.steps] == ["decontamination", "semdedup", "relevance", "perplexity", "rephrase", "mining"]
    assert r.domain_weights == {"chart": 1.5, "language": 0.5, "ocr": 1.5}


# --------------------------------------------------------------------------------------------
# Section hashes
# --------------------------------------------------------------------------------------------

BASE = """\
description: SemDeDup to 10 % removal
steps:
  - semdedup:
      target_removal: 0.1
      clusters: auto
      keep: hardest
domain_weights:
  chart: 1.5
  ocr: 0.5
"""

COSMETIC = {
    "reordered": """\
domain_weights:
  ocr: 0.5
  chart: 1.5
steps:
  - semdedup:
      keep: hardest
      clusters: auto
      target_removal: 0.1
description: SemDeDup to 10 % removal
""",
    "comments": """\
# the 10 % ablation
description: SemDeDup to 10 % removal   # shown in the UI
steps:
  # one step only
  - semdedup:
      target_removal: 0.1   # fraction of each embedding space
      clusters: auto
      keep: hardest         # reference default
domain_weights:
  chart: 1.5
  ocr: 0.5
""",
    "number_spelling": """\
description: SemDeDup to 10 % removal
steps:
  - semdedup:
      target_removal: 0.10
      clusters: auto
      keep: hardest
domain_weights:
  chart: 1.50
  ocr: .5
""",
    "flow_style": """\
{description: "SemDeDup to 10 % removal", steps: [{semdedup: {target_removal: 1.0e-1, clusters: auto, keep: hardest}}],
 domain_weights: {chart: 1.5, ocr: 0.5}}
""",
    "default_values_spelled_out": BASE + "  general: 1.0\n",
}


def versions(text: str, name: str = "r") -> dict[str, str]:
    return section_versions(parse_recipe(text, name))


def changed(a: dict, b: dict) -> set[str]:
    return {s for s in SECTIONS if a[s] != b[s]}


def test_sections_cover_all():
    v = versions(BASE)
    assert set(v) == set(SECTIONS)
    used = ("semdedup_clustering", "semdedup_threshold", "plan", "training")
    assert len({v[s] for s in used}) == 4
    assert len({v[s] for s in SECTIONS if s not in used}) == 1      # the steps BASE does not use


ALL_STEPS = """steps:
  - decontamination: {threshold: 0.99}
  - perplexity: {keep_fraction: 0.5, scorer: tiny}
  - relevance: {remove: true, max_flag_rate: 0.05}
  - rephrase: {fraction: 0.3}
  - mining: {k: 20, upsample: {chartqa: 2}}
"""


@pytest.mark.parametrize("edit, sections", [
    (("keep_fraction: 0.5", "keep_fraction: 0.2"), {"perplexity_selection"}),
    (("keep_fraction: 0.5", "slice: low"), {"perplexity_selection"}),
    (("scorer: tiny", "scorer: chart-expert"), {"perplexity_scoring", "perplexity_selection"}),
    (("chartqa: 2", "chartqa: 3"), {"mining"}),
    (("k: 20", "k: 50"), {"mining", "mining_neighbours"}),
    (("fraction: 0.3", "fraction: 0.5"), {"rephrase"}),
    (("threshold: 0.99", "threshold: 0.98"), {"decontamination"}),
    (("max_flag_rate: 0.05", "max_flag_rate: 0.02"), {"relevance"}),
])
def test_a_step_edit_changes_only_what_reads_it(edit, sections):
    old, new = edit
    assert changed(versions(ALL_STEPS), versions(ALL_STEPS.replace(old, new))) == sections


@pytest.mark.parametrize("variant", sorted(COSMETIC))
def test_cosmetic_edits_leave_every_section_unchanged(variant):
    assert versions(COSMETIC[variant]) == versions(BASE)


def test_file_name_does_not_enter_the_hash():
    assert versions(BASE, "a") == versions(BASE, "b")


@pytest.mark.parametrize("edit, section", [
    (("target_removal: 0.1", "target_removal: 0.2"), "semdedup_threshold"),
    (("target_removal: 0.1", "eps: 0.1"), "semdedup_threshold"),
    (("clusters: auto", "clusters: 50"), "semdedup_clustering"),
    (("keep: hardest", "keep: random"), "semdedup_clustering"),
    (("keep: hardest", "keep: easiest"), "semdedup_clustering"),
    (("  ocr: 0.5\n", "  ocr: 0.5\n  language: 0.25\n"), "plan"),
    (("  chart: 1.5\n", "  chart: 2\n"), "plan"),
    (("  ocr: 0.5\n", ""), "plan"),
])
def test_an_edit_changes_only_its_section(edit, section):
    old, new = edit
    assert old in BASE
    assert changed(versions(BASE), versions(BASE.replace(old, new))) == {section}


def test_invalid_recipes_get_invalid_versions(tmp_path):
    errors = []
    for name, text in [("a", "steps:\n  - semdedup: {target_removal: 1.5}\n"),
                       ("b", "steps:\n  - semdedup: {target_remval: 0.1}\n")]:
        (tmp_path / f"{name}.yaml").write_text(text)
        with pytest.raises(RecipeError) as info:
            load_recipe(tmp_path / f"{name}.yaml")
        errors.append(info.value)
    va, vb = (section_versions(e) for e in errors)
    for v in (va, vb):
        assert set(v) == set(SECTIONS)
        assert all(x.startswith("invalid-") for x in v.values())
        assert len(set(v.values())) == 1
    assert va["plan"] != vb["plan"]
    # stable: the same error gives the same version
    with pytest.raises(RecipeError) as again:
        load_recipe(tmp_path / "a.yaml")
    assert section_versions(again.value) == va
    # and a valid recipe never looks invalid
    assert not any(x.startswith("invalid-") for x in versions(BASE).values())


# --------------------------------------------------------------------------------------------
# Hostile recipe files
# --------------------------------------------------------------------------------------------

def test_a_yaml_alias_bomb_is_refused_fast_and_briefly(tmp_path):
    import time
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(8))
    (tmp_path / "bomb.yaml").write_text(bomb)
    started = time.perf_counter()
    with pytest.raises(RecipeError) as info:
        load_recipe(tmp_path / "bomb.yaml")
    assert time.perf_counter() - started < 1 and len(str(info.value)) < 1000
    assert "alias" in str(info.value)


def test_an_oversized_file_is_not_a_recipe(tmp_path):
    (tmp_path / "huge.yaml").write_text("description: " + "x" * (100 << 10) + "\n")
    with pytest.raises(RecipeError, match="larger than"):
        load_recipe(tmp_path / "huge.yaml")


def test_a_directory_named_like_a_recipe_is_rejected_alone(tmp_path):
    (tmp_path / "x.yaml").mkdir()
    (tmp_path / "ok.yaml").write_text(OK_STEP)
    got = load_recipes(tmp_path)
    assert isinstance(got["ok"], Recipe)
    assert isinstance(got["x"], RecipeError) and "not a regular file" in str(got["x"])


def test_only_files_named_like_recipes_become_partitions(tmp_path):
    from resources.recipes import RecipesResource
    for name in ("good_one", "Bad Name", "../escape", "ünïcode"):
        (tmp_path / f"{name.replace('/', '_')}.yaml").write_text(OK_STEP)
    res = RecipesResource(directory=str(tmp_path))
    assert res.partition_names() == ["good_one"]
    assert isinstance(res.load_all()["Bad Name"], RecipeError)


def test_recipe_keys_and_links_cannot_reach_outside(tmp_path):
    """Path-like keys are just unknown names; a link leaving the directory is not followed."""
    from mm_assets.recipes.schema import load_recipes
    (tmp_path / "step.yaml").write_text('steps:\n  - "../../etc/passwd": {}\n')
    (tmp_path / "weights.yaml").write_text(OK_STEP + 'domain_weights: {"../chart": 1}\n')
    secret = tmp_path.parent / f"{tmp_path.name}-secret.txt"
    secret.write_text("password: hunter2\n")
    (tmp_path / "leak.yaml").symlink_to(secret)
    (tmp_path / "alias.yaml").symlink_to(tmp_path / "weights.yaml")      # inside: followed
    got = load_recipes(tmp_path)
    assert "unknown step" in str(got["step"])
    assert "unknown domain" in str(got["weights"]) and "unknown domain" in str(got["alias"])
    assert "outside the recipes directory" in str(got["leak"]) and "hunter2" not in str(got["leak"])
