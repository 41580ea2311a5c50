"""Why a source record was quarantined.

One code per kind of malformed input. The ingest writes these codes into the quarantine
table; the look-alike data generator writes the code it expects for each planted bad
record into its planted truth, so tests can compare the two exactly.
"""

from enum import StrEnum


class Reason(StrEnum):
    INVALID_JSON = "invalid_json"              # the array element is not valid JSON
    TRUNCATED_JSON = "truncated_json"          # the array ends inside an element
    NON_UTF8 = "non_utf8"                      # the element's bytes are not UTF-8
    INVALID_UNICODE = "invalid_unicode"        # valid JSON, but a \\ud800-style escape is no character
    TOO_DEEP = "too_deep"                      # nested deeper than any record (and Python's parser)
    ELEMENT_TOO_LARGE = "element_too_large"    # larger than the splitter keeps for one element
    NOT_AN_OBJECT = "not_an_object"            # the element is valid JSON but not an object
    MISSING_FIELD = "missing_field"            # a required field is absent or of the wrong type
    UNSUPPORTED_MULTI_IMAGE = "unsupported_multi_image"  # several images: the OV stage, not these 8 domains
    UNKNOWN_SOURCE = "unknown_source"          # `source` is not in the source -> domain mapping
    EMPTY_CONVERSATION = "empty_conversation"  # no turns, or a turn with empty text
    BAD_ROLE_ORDER = "bad_role_order"          # turns do not alternate human, gpt, human, ...
    IMAGE_TOKEN_MISMATCH = "image_token_mismatch"  # <image> count cannot be reconciled with the images
    MISSING_IMAGE = "missing_image"            # the image path is in no tarball
    TRUNCATED_TARBALL = "truncated_tarball"    # the image was in the lost part of a truncated tarball
    REFUSED_MEMBER = "refused_member"          # the tar member is a link, a device or has a `..` name
    UNSAFE_PATH = "unsafe_path"                # the record's image path has a `..` component
    CORRUPT_IMAGE = "corrupt_image"            # the image bytes do not decode
    UNSUPPORTED_IMAGE = "unsupported_image"    # whole, but not a format training reads (PPM, EPS, …)
    IMAGE_TOO_LARGE = "image_too_large"        # more pixels than any training image needs


# Fixes that ingest applies instead of quarantining; recorded per sample in `samples.fixes`.
FIX_INSERTED_IMAGE_TOKEN = "inserted_image_token"       # an image row without any <image>
FIX_COLLAPSED_IMAGE_TOKENS = "collapsed_image_tokens"   # one image, a run of adjacent <image>s
FIX_UNWRAPPED_IMAGE_LIST = "unwrapped_image_list"       # `image: ["a.jpg"]` -> `image: "a.jpg"`
