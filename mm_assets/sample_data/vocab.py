"""Word lists shared by the drawing families."""

from __future__ import annotations

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
                "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen")
ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth")

OCR_WORDS = (
    "apple", "river", "market", "silver", "garden", "window", "orange", "planet", "candle",
    "forest", "bridge", "yellow", "summer", "winter", "coffee", "harbor", "pencil", "rocket",
    "castle", "meadow", "violet", "thunder", "lantern", "copper", "anchor", "breeze", "canyon",
    "desert", "falcon", "glacier", "horizon", "island", "jungle", "kettle", "lemon", "marble",
    "needle", "ocean", "pepper", "quartz", "ribbon", "saddle", "temple", "velvet", "walnut",
    "zebra", "station", "ticket", "exit", "open", "closed", "sale", "fresh", "bakery", "books",
    "museum", "library", "parking", "north", "south", "east", "west", "street", "avenue",
    "hotel", "pharmacy", "welcome", "danger", "caution", "notice", "private", "office",
    "kitchen", "garage", "school", "stadium", "airport", "platform", "gate", "tower", "square",
    "central", "express", "limited", "special", "natural", "organic", "classic", "modern",
    "golden", "crystal", "shadow", "spring", "autumn", "morning", "evening", "midnight",
    "sunrise", "harvest", "village", "cottage", "festival", "concert", "theatre",
    "cinema", "gallery", "studio", "factory", "workshop", "delivery", "service", "repair",
    "café", "naïve", "résumé", "Zürich", "façade", "jalapeño", "crème", "déjà", "piñata",
    "B-17", "2024", "No.42", "A4", "24/7", "100%", "$5.99", "ROUTE 66", "Level 3",
)

LINE_PHRASES = (
    "fresh bread daily", "open seven days", "please keep off the grass", "no parking here",
    "welcome to the museum", "exit only", "platform four", "mind the gap", "sale ends friday",
    "staff only beyond this point", "emergency exit", "quiet please", "push to open",
    "hot coffee and tea", "rooms available", "closed for repairs", "turn left at the sign",
    "tickets sold here", "last train at midnight", "free wifi inside", "books and maps",
    "all items half price", "drive slowly", "watch your step", "garden center",
    "deliveries at the rear", "no smoking", "open late on fridays", "city library",
    "north entrance", "fire assembly point", "keep door closed", "order at the counter",
    "live music tonight", "fresh fruit market", "bicycle repair shop", "lost and found",
    "visitor information", "second floor", "toilets to the right", "pay and display",
    "private road", "school zone", "cash only", "wet paint", "beware of the dog",
)

FIRST_NAMES = ("James", "Mary", "Robert", "Linda", "Michael", "Susan", "David", "Karen", "Thomas",
               "Nancy", "Daniel", "Laura", "Paul", "Helen", "Mark", "Sandra", "George", "Donna",
               "Kevin", "Carol", "Brian", "Ruth", "Edward", "Sharon", "Ronald", "Amy", "Anna",
               "Peter", "Alice", "Frank", "Grace", "Henry", "Irene", "Oscar", "Julia", "Victor")
LAST_NAMES = ("Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis", "Wilson",
              "Anderson", "Taylor", "Thomas", "Moore", "Martin", "Jackson", "Thompson", "White",
              "Harris", "Clark", "Lewis", "Walker", "Hall", "Allen", "Young", "King", "Wright",
              "Scott", "Green", "Baker", "Adams", "Nelson", "Carter", "Mitchell", "Roberts")
COMPANY_STEMS = ("Acme", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Hooli", "Vandelay",
                 "Northwind", "Contoso", "Fabrikam", "Tailspin", "Wingtip", "Lakeshore",
                 "Pinecrest", "Riverside", "Summit", "Bluebird", "Redwood", "Silverline")
COMPANY_SUFFIXES = ("Inc.", "Corp.", "Ltd.", "Co.", "Group", "Labs", "Industries", "Partners")
ITEMS = ("Paper clips", "Toner", "Envelopes", "Stapler", "Folders", "Pens", "Printer paper",
         "Labels", "Binders", "Markers", "Notebooks", "Coffee", "Tape", "Batteries", "Cables",
         "Desk lamp", "Chair mat", "Ink", "Scissors", "Calendar")
CITIES = ("Denver", "Austin", "Boston", "Dallas", "Fresno", "Omaha", "Tulsa", "Reno", "Tampa",
          "Raleigh", "Durham", "Richmond", "Madison", "Boise", "Eugene", "Dayton")

CATEGORY_SETS = {
    "fruit": ("Apples", "Pears", "Grapes", "Mango", "Kiwi", "Plums", "Lemons", "Figs"),
    "country": ("Chile", "Peru", "Japan", "Kenya", "Spain", "Norway", "Egypt", "Canada", "India"),
    "month": ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct"),
    "product": ("Alpha", "Beta", "Gamma", "Delta", "Omega", "Sigma", "Kappa", "Zeta"),
    "team": ("Hawks", "Bears", "Lions", "Wolves", "Eagles", "Sharks", "Tigers", "Owls"),
    "city": CITIES,
    "channel": ("Online", "Retail", "Phone", "Partner", "Direct", "Kiosk"),
    "sector": ("Energy", "Health", "Tech", "Retail", "Farming", "Transport", "Finance"),
}
CATEGORY_NOUNS = {"fruit": "fruit", "country": "country", "month": "month", "product": "product",
                  "team": "team", "city": "city", "channel": "channel", "sector": "sector"}
METRICS = ("Sales", "Revenue", "Visitors", "Score", "Output", "Orders", "Profit", "Users",
           "Exports", "Downloads", "Rainfall", "Votes")
UNITS = ("", " (units)", " ($M)", " (k)", " (%)", " (tons)", " (mm)")
SERIES_NAMES = ("North", "South", "Online", "Store", "Model A", "Model B", "Group 1", "Group 2",
                "Urban", "Rural", "2022 plan", "Actual")
