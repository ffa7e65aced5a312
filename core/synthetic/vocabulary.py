"""The generator's embedded vocabulary: categories with their market behaviour and
words, names, cities with fictional phone ranges, review phrase banks.

Tables only; nothing here draws at random.
"""

from __future__ import annotations

from typing import NamedTuple


class CategorySpec(NamedTuple):
    """The vocabulary and the market behaviour of one category."""

    name: str
    share: float  # share of the market: of items, and of customers' favourite categories
    price_median: float
    price_sigma: float  # of log price
    season: tuple[float, ...]  # demand multiplier per month, January first
    brands: tuple[str, ...]
    adjectives: tuple[str, ...]
    nouns: tuple[str, ...]
    features: tuple[str, ...]
    uses: tuple[str, ...]
    aspects: tuple[str, ...]  # what reviews talk about


CATEGORIES: tuple[CategorySpec, ...] = (
    CategorySpec(
        "Outdoor", 0.09, 45.0, 0.7,
        (0.6, 0.6, 0.8, 1.0, 1.3, 1.6, 1.7, 1.5, 1.1, 0.8, 0.7, 0.9),
        ("Northwind", "Ridgeline", "Summit & Pine", "Trailcraft", "Alder Peak", "Bluewater"),
        ("Merino Wool", "Waterproof", "Ultralight", "Insulated", "Packable", "Ripstop",
         "All-Weather", "Trekking", "Down-Filled", "Breathable"),
        ("Hiking Socks", "Rain Jacket", "Daypack", "Tent", "Sleeping Bag", "Headlamp",
         "Trekking Poles", "Camping Stove", "Water Filter", "Hiking Boots", "Fleece Pullover",
         "Camp Chair"),
        ("a seam-sealed ripstop shell", "breathable merino wool",
         "reinforced stitching at every stress point", "a lightweight aluminium frame",
         "recycled down insulation", "a water-repellent coating"),
        ("weekend hikes", "wet-weather camping", "alpine trekking", "long days on the trail",
         "family camping trips", "backpacking"),
        ("waterproofing", "weight", "warmth", "zippers", "durability", "fit"),
    ),
    CategorySpec(
        "Kitchen", 0.10, 30.0, 0.7,
        (1.0, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 1.0, 1.0, 1.4, 1.5),
        ("Copperleaf", "Hearth & Co", "Saltbox", "Olivewood", "Brightpan", "Cuisio"),
        ("Cast Iron", "Nonstick", "Stainless Steel", "Ceramic", "Bamboo", "Enameled",
         "Professional", "Compact", "Tri-Ply", "Heat-Resistant"),
        ("Skillet", "Chef's Knife", "Dutch Oven", "Cutting Board", "Saucepan",
         "Mixing Bowl Set", "Spatula Set", "Coffee Grinder", "French Press", "Baking Sheet",
         "Measuring Cups", "Kettle"),
        ("a tri-ply stainless base", "a PFOA-free nonstick coating",
         "a riveted ergonomic handle", "sustainably sourced bamboo",
         "high-carbon German steel", "an oven-safe enamel finish"),
        ("everyday cooking", "weeknight dinners", "holiday baking", "slow-cooked stews",
         "meal prep", "your morning coffee"),
        ("nonstick coating", "handle", "heat distribution", "ease of cleaning", "sharpness",
         "lid"),
    ),
    CategorySpec(
        "Beauty", 0.11, 18.0, 0.6,
        (0.9, 1.3, 1.0, 1.0, 1.3, 0.9, 0.9, 0.9, 0.9, 0.9, 1.1, 1.5),
        ("Lumière Botanics", "Petal & Dew", "Verdana Skin", "Glowhaus", "Aurelia",
         "Pure Meadow"),
        ("Hydrating", "Vitamin C", "Fragrance-Free", "Rosewater", "Matte", "Nourishing",
         "Brightening", "Gentle", "Argan Oil", "Hyaluronic"),
        ("Face Serum", "Moisturizer", "Lip Balm", "Shampoo", "Conditioner", "Body Lotion",
         "Eye Cream", "Cleanser", "Sunscreen SPF 50", "Hair Mask", "Foundation", "Hand Cream"),
        ("cold-pressed argan oil", "hyaluronic acid and niacinamide",
         "a light, non-greasy formula", "plant-based botanical extracts",
         "dermatologist-tested ingredients", "recyclable glass packaging"),
        ("sensitive skin", "a daily skincare routine", "dry winter skin",
         "curly and frizzy hair", "a natural everyday look", "after-sun care"),
        ("scent", "texture", "absorption", "pump bottle", "results", "consistency"),
    ),
    CategorySpec(
        "Electronics", 0.14, 80.0, 0.9,
        (0.9, 0.8, 0.8, 0.8, 0.8, 0.9, 0.9, 1.1, 1.0, 1.0, 1.7, 1.9),
        ("Voltix", "Nimbus Audio", "Kestrel Labs", "Arcwave", "Pixelon", "Quantra"),
        ("Wireless", "Noise-Cancelling", "Bluetooth", "4K", "Smart", "Portable",
         "Fast-Charging", "Ergonomic", "Water-Resistant", "USB-C"),
        ("Headphones", "Earbuds", "Speaker", "Power Bank", "Webcam", "Keyboard", "Mouse",
         "Smartwatch", "Charger", "Monitor", "E-Reader", "Action Camera"),
        ("a 30-hour battery", "active noise cancellation",
         "Bluetooth 5.3 with multipoint pairing", "a 4K sensor with image stabilisation",
         "65 W USB-C fast charging", "a low-latency wireless connection"),
        ("working from home", "commuting", "gaming sessions", "video calls", "travel",
         "workouts"),
        ("battery life", "sound quality", "build quality", "setup", "connectivity", "screen"),
    ),
    CategorySpec(
        "Books", 0.10, 15.0, 0.4,
        (1.1, 1.0, 0.9, 0.9, 0.9, 1.1, 1.2, 1.1, 1.0, 0.9, 1.0, 1.4),
        ("Harbor Lane Press", "Quillstone", "Marigold Books", "Inkwell House",
         "Foxglove Publishing", "Lantern & Leaf"),
        ("Illustrated", "Hardcover", "Paperback", "Collector's Edition", "Bestselling",
         "Annotated", "Pocket", "Award-Winning", "Complete", "Beginner's"),
        ("Mystery Novel", "Cookbook", "Fantasy Saga", "Biography", "Travel Guide",
         "Poetry Collection", "Science Fiction Novel", "History of Rome", "Gardening Handbook",
         "Picture Book", "Self-Help Guide", "Graphic Novel"),
        ("a beautifully designed cover", "clear, engaging prose",
         "vivid full-colour illustrations", "thoroughly researched detail",
         "a foreword by the author", "a sturdy sewn binding"),
        ("long train journeys", "bedtime reading", "curious young readers", "book clubs",
         "a rainy weekend", "gift giving"),
        ("plot", "characters", "writing", "pacing", "ending", "print quality"),
    ),
    CategorySpec(
        "Toys", 0.08, 25.0, 0.6,
        (0.6, 0.6, 0.7, 0.7, 0.7, 0.8, 0.8, 0.8, 0.9, 1.1, 1.9, 2.6),
        ("Bumblebee Toys", "Kiddoo", "Tinker Town", "Puzzlewick", "Rocket & Bear",
         "Jollyworks"),
        ("Wooden", "Magnetic", "Educational", "Remote-Control", "Plush", "Stackable",
         "Glow-in-the-Dark", "Musical", "Building", "Giant"),
        ("Train Set", "Building Blocks", "Puzzle", "Dollhouse", "Race Car", "Teddy Bear",
         "Science Kit", "Board Game", "Marble Run", "Dinosaur Figure Set", "Art Set",
         "Play Kitchen"),
        ("non-toxic water-based paints", "smooth rounded edges",
         "over 100 interlocking pieces", "rechargeable batteries",
         "soft hypoallergenic fabric", "step-by-step picture instructions"),
        ("ages 3 and up", "rainy afternoons", "STEM learning", "family game night",
         "birthday presents", "imaginative play"),
        ("durability", "instructions", "colors", "assembly", "play value", "safety"),
    ),
    CategorySpec(
        "Fashion", 0.14, 35.0, 0.6,
        (0.9, 0.9, 1.1, 1.2, 1.0, 0.9, 0.9, 1.0, 1.2, 1.2, 1.1, 1.3),
        ("Meridian Row", "Atelier Nova", "Cobalt & Thread", "Linea", "Fernwood Apparel",
         "Urbanite"),
        ("Organic Cotton", "Slim-Fit", "Linen", "Cashmere-Blend", "Relaxed", "Vintage-Wash",
         "Quilted", "Stretch", "Leather", "Oversized"),
        ("T-Shirt", "Jeans", "Sweater", "Dress", "Blazer", "Sneakers", "Scarf", "Handbag",
         "Chinos", "Hoodie", "Belt", "Trench Coat"),
        ("soft organic cotton", "a tailored modern cut", "reinforced double stitching",
         "full-grain leather", "a stretch fabric that keeps its shape",
         "responsibly sourced wool"),
        ("the office", "weekend outings", "evenings out", "layering in autumn",
         "everyday wear", "travel"),
        ("fit", "fabric", "stitching", "color", "sizing", "comfort"),
    ),
    CategorySpec(
        "Home", 0.10, 40.0, 0.8,
        (1.3, 1.0, 1.0, 1.0, 0.9, 0.9, 0.9, 1.0, 1.1, 1.1, 1.1, 1.1),
        ("Nestwell", "Oak & Ember", "Casa Lumen", "Driftwood Living", "Hygge House",
         "Stillwater Home"),
        ("Velvet", "Handwoven", "Minimalist", "Scandinavian", "Stoneware", "Linen",
         "Solid Oak", "Blackout", "Scented", "Modular"),
        ("Throw Pillow", "Area Rug", "Table Lamp", "Curtains", "Bookshelf", "Candle",
         "Duvet Cover", "Wall Mirror", "Storage Baskets", "Picture Frame", "Bath Towel Set",
         "Plant Pot"),
        ("hand-finished solid oak", "a soft brushed velvet cover", "OEKO-TEX certified linen",
         "a warm dimmable LED", "hand-poured soy wax", "sturdy powder-coated steel"),
        ("cosy living rooms", "small apartments", "a calm bedroom", "guest rooms",
         "a home office", "housewarming gifts"),
        ("material", "assembly", "finish", "size", "color", "sturdiness"),
    ),
    CategorySpec(
        "Sports", 0.08, 35.0, 0.7,
        (1.5, 1.2, 1.0, 1.0, 1.1, 1.3, 1.3, 1.2, 1.0, 0.8, 0.8, 0.9),
        ("Apex Motion", "Stride Athletics", "Ironclad Fitness", "Velocity", "Pacewell",
         "Core & Co"),
        ("Adjustable", "Non-Slip", "Lightweight", "Pro", "Compression", "Foam", "Carbon",
         "Quick-Dry", "Resistance", "Cushioned"),
        ("Yoga Mat", "Dumbbell Set", "Running Shoes", "Resistance Bands", "Tennis Racket",
         "Jump Rope", "Cycling Helmet", "Foam Roller", "Water Bottle", "Gym Bag", "Kettlebell",
         "Football"),
        ("a non-slip textured surface", "quick-dry breathable mesh", "a carbon-fibre frame",
         "adjustable weight plates", "high-density foam", "a responsive cushioned sole"),
        ("home workouts", "marathon training", "yoga practice", "the gym", "weekend matches",
         "recovery days"),
        ("grip", "weight", "durability", "comfort", "cushioning", "stability"),
    ),
    CategorySpec(
        "Pets", 0.06, 20.0, 0.6,
        (1.0,) * 12,
        ("Happy Paws", "Whisker & Co", "Barkley", "Furbish", "Tailwind Pets", "Purrfect Home"),
        ("Orthopedic", "Grain-Free", "Chew-Proof", "Self-Cleaning", "Reflective",
         "Interactive", "Organic", "Washable", "Adjustable", "Calming"),
        ("Dog Bed", "Cat Tree", "Dog Leash", "Cat Litter", "Dog Food", "Cat Toy",
         "Pet Carrier", "Grooming Brush", "Chew Toy", "Water Fountain", "Dog Harness",
         "Scratching Post"),
        ("memory foam for older joints", "natural grain-free ingredients",
         "tough chew-resistant rubber", "a machine-washable cover",
         "reflective stitching for night walks", "a quiet filtered pump"),
        ("large dogs", "indoor cats", "puppies in training", "senior pets", "long walks",
         "multi-pet homes"),
        ("durability", "size", "material", "smell", "ease of cleaning", "ingredients"),
    ),
)
CATEGORY_NAMES: tuple[str, ...] = tuple(c.name for c in CATEGORIES)

# After a purchase in the key category, the next interaction is often in the value.
COMPLEMENTS: dict[str, str] = {
    "Outdoor": "Sports", "Sports": "Outdoor", "Kitchen": "Home", "Home": "Kitchen",
    "Beauty": "Fashion", "Fashion": "Beauty", "Electronics": "Books", "Books": "Toys",
    "Toys": "Books", "Pets": "Home",
}

GENERIC_ASPECTS = ("delivery", "packaging", "price", "value for money", "customer service")

FIRST_NAMES = (
    "Maria", "José", "Wei", "Aisha", "Liam", "Olivia", "Noah", "Emma", "Mohammed", "Fatima",
    "Priya", "Arjun", "Yuki", "Hiroshi", "Chen", "Mei", "Kwame", "Amara", "Chloé", "Lucas",
    "Sofia", "Mateo", "Valentina", "Diego", "Camila", "Ethan", "Ava", "Mia", "Isabella",
    "James", "Charlotte", "Benjamin", "Amelia", "Oliver", "Harper", "Elijah", "Evelyn",
    "Daniel", "Abigail", "Henry", "Emily", "Sebastian", "Ella", "Jack", "Scarlett", "Samuel",
    "Grace", "David", "Zoë", "Joseph", "Lily", "Gabriel", "Hannah", "Ahmed", "Layla", "Omar",
    "Yasmin", "Ravi", "Ananya", "Vikram", "Deepa", "Sanjay", "Kavya", "Min-jun", "Seo-yeon",
    "Ji-woo", "Thanh", "Linh", "Minh", "Kofi", "Ngozi", "Chinedu", "Zanele", "Thabo", "Sipho",
    "Lerato", "Björn", "Ingrid", "Lars", "Astrid", "Søren", "Freya", "Giulia", "Marco", "Luca",
    "Francesca", "Pierre", "Camille", "Élodie", "Antoine", "Hans", "Katarina", "Jürgen",
    "Anja", "Dmitri", "Olga", "Ivan", "Anastasia", "Mehmet", "Elif", "Aylin", "Tariq",
    "Noura", "Rafael", "Beatriz", "Tomás", "Inés", "Sean", "Siobhan", "Aoife", "Connor",
    "Malik", "Keisha", "Jamal", "Tanisha", "Kai", "Leilani", "Aroha", "Tane", "Nadia",
)

LAST_NAMES = (
    "García", "Lopez", "Martinez", "Rodriguez", "Hernandez", "Gonzalez", "Perez", "Sanchez",
    "Ramirez", "Torres", "Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis",
    "Wilson", "Anderson", "Taylor", "Thomas", "Moore", "Jackson", "Martin", "Lee", "Thompson",
    "White", "Harris", "Clark", "Lewis", "Robinson", "Walker", "Young", "Allen", "King",
    "Wright", "Scott", "Green", "Baker", "Adams", "Nelson", "Hill", "Campbell", "Mitchell",
    "Roberts", "Carter", "Phillips", "Evans", "Turner", "Parker", "Collins", "Edwards",
    "Stewart", "Morris", "Murphy", "O'Brien", "O'Connor", "Kelly", "Walsh", "Byrne", "Wang",
    "Li", "Zhang", "Liu", "Chen", "Yang", "Huang", "Zhao", "Wu", "Zhou", "Kim", "Park", "Choi",
    "Jung", "Kang", "Nguyen", "Tran", "Pham", "Le", "Hoang", "Patel", "Shah", "Singh", "Kumar",
    "Sharma", "Gupta", "Reddy", "Iyer", "Khan", "Ali", "Hussain", "Rahman", "Haddad",
    "Nasser", "Yilmaz", "Kaya", "Demir", "Okafor", "Adeyemi", "Mensah", "Nkosi", "Dlamini",
    "Mwangi", "Otieno", "Tanaka", "Suzuki", "Sato", "Takahashi", "Watanabe", "Müller",
    "Schmidt", "Schneider", "Fischer", "Weber", "Becker", "Dubois", "Moreau", "Lefèvre",
    "Rossi", "Russo", "Bianchi", "Ferrari", "Esposito", "Silva", "Santos", "Oliveira", "Costa",
    "Pereira", "Kowalski", "Nowak", "Ivanov", "Petrov", "Novak", "Jensen", "Nielsen", "Hansen",
    "Johansson", "Lindqvist", "van der Berg", "de Vries", "Jansen", "Cohen", "Levi",
    "Friedman",
)

EMAIL_DOMAINS = (
    "example.com", "example.org", "example.net", "mail.example.com", "inbox.example.org",
    "post.example.net",
)


class City(NamedTuple):
    """A customer's city, where its region and the format of its phone numbers come from."""

    name: str
    region: str
    weight: float  # relative number of customers
    country: str  # selects the phone formats
    phone: str  # national number without trunk prefix, groups by spaces, '#' = any digit


# Phone ranges: NANP 555-01xx, Ofcom's drama ranges (UK), ARCEP's fiction ranges (FR),
# ACMA's fiction ranges (AU) where they exist; all parse as valid numbers.
CITIES: tuple[City, ...] = (
    City("San Francisco", "US-West", 3.0, "US", "415 555 01##"),
    City("Los Angeles", "US-West", 5.0, "US", "213 555 01##"),
    City("Seattle", "US-West", 3.0, "US", "206 555 01##"),
    City("Portland", "US-West", 2.0, "US", "503 555 01##"),
    City("San Diego", "US-West", 2.5, "US", "619 555 01##"),
    City("Denver", "US-West", 2.5, "US", "303 555 01##"),
    City("Phoenix", "US-West", 2.5, "US", "602 555 01##"),
    City("Las Vegas", "US-West", 1.5, "US", "702 555 01##"),
    City("New York", "US-Northeast", 7.0, "US", "212 555 01##"),
    City("Boston", "US-Northeast", 3.0, "US", "617 555 01##"),
    City("Philadelphia", "US-Northeast", 3.0, "US", "215 555 01##"),
    City("Pittsburgh", "US-Northeast", 1.5, "US", "412 555 01##"),
    City("Newark", "US-Northeast", 1.5, "US", "973 555 01##"),
    City("Atlanta", "US-South", 3.0, "US", "404 555 01##"),
    City("Miami", "US-South", 3.0, "US", "305 555 01##"),
    City("Houston", "US-South", 4.0, "US", "713 555 01##"),
    City("Dallas", "US-South", 3.5, "US", "214 555 01##"),
    City("Austin", "US-South", 2.5, "US", "512 555 01##"),
    City("Nashville", "US-South", 2.0, "US", "615 555 01##"),
    City("Charlotte", "US-South", 2.0, "US", "704 555 01##"),
    City("Chicago", "US-Midwest", 5.0, "US", "312 555 01##"),
    City("Minneapolis", "US-Midwest", 2.0, "US", "612 555 01##"),
    City("Detroit", "US-Midwest", 2.0, "US", "313 555 01##"),
    City("Columbus", "US-Midwest", 2.0, "US", "614 555 01##"),
    City("St. Louis", "US-Midwest", 1.5, "US", "314 555 01##"),
    City("Toronto", "CA", 3.0, "CA", "416 555 01##"),
    City("Vancouver", "CA", 2.0, "CA", "604 555 01##"),
    City("Montreal", "CA", 2.0, "CA", "514 555 01##"),
    City("London", "UK", 6.0, "UK", "20 7946 0###"),
    City("Manchester", "UK", 2.0, "UK", "161 496 0###"),
    City("Birmingham", "UK", 2.0, "UK", "121 496 0###"),
    City("Edinburgh", "UK", 1.5, "UK", "131 496 0###"),
    City("Glasgow", "UK", 1.5, "UK", "141 496 0###"),
    City("Bristol", "UK", 1.5, "UK", "117 496 0###"),
    City("Leeds", "UK", 1.5, "UK", "113 496 0###"),
    City("Berlin", "DE", 3.5, "DE", "30 23125###"),
    City("Hamburg", "DE", 2.0, "DE", "40 66969###"),
    City("Munich", "DE", 2.5, "DE", "89 99998###"),
    City("Cologne", "DE", 1.5, "DE", "221 4710###"),
    City("Frankfurt", "DE", 1.5, "DE", "69 90009###"),
    City("Paris", "FR", 5.0, "FR", "1 99 00 ## ##"),
    City("Lyon", "FR", 2.0, "FR", "4 65 71 ## ##"),
    City("Marseille", "FR", 2.0, "FR", "4 65 71 ## ##"),
    City("Toulouse", "FR", 1.5, "FR", "5 36 49 ## ##"),
    City("Lille", "FR", 1.5, "FR", "3 53 01 ## ##"),
    City("Nantes", "FR", 1.5, "FR", "2 61 91 ## ##"),
    City("Madrid", "ES", 3.0, "ES", "91 5## ## ##"),
    City("Barcelona", "ES", 3.0, "ES", "93 5## ## ##"),
    City("Valencia", "ES", 1.5, "ES", "96 5## ## ##"),
    City("Milan", "IT", 2.5, "IT", "02 5### ####"),
    City("Rome", "IT", 2.5, "IT", "06 5### ####"),
    City("Amsterdam", "NL", 2.0, "NL", "20 5## ####"),
    City("Rotterdam", "NL", 1.5, "NL", "10 5## ####"),
    City("Dublin", "IE", 2.0, "IE", "1 555 ####"),
    City("Sydney", "AU", 3.0, "AU", "2 5550 ####"),
    City("Melbourne", "AU", 2.5, "AU", "3 5550 ####"),
    City("Brisbane", "AU", 1.5, "AU", "7 5550 ####"),
)

# The ingest maps city -> region with this.
CITY_REGIONS: dict[str, str] = {c.name: c.region for c in CITIES}

# Country calling code per `City.country`.
CALLING_CODES = {"US": "1", "CA": "1", "UK": "44", "DE": "49", "FR": "33", "ES": "34",
                 "IT": "39", "NL": "31", "IE": "353", "AU": "61"}

# Review phrase banks. Aspect sentences take an aspect of the item's category (or a
# generic one); general sentences may name the item's noun.
POSITIVE_ASPECT = (
    "The {aspect} is excellent.", "Really impressed with the {aspect}.",
    "The {aspect} exceeded my expectations.", "I love the {aspect}.",
    "The {aspect} is fantastic.", "Great {aspect}, no complaints at all.",
    "The {aspect} is superb.", "Honestly the {aspect} is perfect.",
    "Top marks for the {aspect}.", "The {aspect} is much better than I expected.",
    "Very happy with the {aspect}.", "The {aspect} is outstanding.",
    "The {aspect} is brilliant.", "Wonderful {aspect}.", "The {aspect} is spot on.",
    "Couldn't be happier with the {aspect}.", "The {aspect} is flawless.",
    "Impressive {aspect}.", "The {aspect} is just right.", "The {aspect} is delightful.",
    "The {aspect} is a real highlight.",
)
NEUTRAL_ASPECT = (
    "The {aspect} is okay.", "The {aspect} is average.",
    "The {aspect} is fine, nothing special.", "The {aspect} is acceptable.",
    "The {aspect} is about what I expected.", "The {aspect} is decent but not remarkable.",
    "The {aspect} could be better, could be worse.",
    "Nothing to write home about regarding the {aspect}.", "The {aspect} is so-so.",
    "The {aspect} is reasonable.", "The {aspect} is middle of the road.",
    "The {aspect} is adequate.", "I have mixed feelings about the {aspect}.",
    "The {aspect} is passable.", "The {aspect} is standard for this kind of product.",
    "The {aspect} is neither good nor bad.", "The {aspect} does the job.",
    "The {aspect} is fair.", "The {aspect} is ordinary.",
    "The {aspect} is satisfactory, no more.",
)
NEGATIVE_ASPECT = (
    "The {aspect} is terrible.", "Very disappointed with the {aspect}.",
    "The {aspect} is poor.", "The {aspect} is a letdown.", "The {aspect} is awful.",
    "The {aspect} is much worse than advertised.", "I hate the {aspect}.",
    "The {aspect} is dreadful.", "The {aspect} is a real problem.",
    "The {aspect} is unacceptable.", "Really unhappy with the {aspect}.",
    "The {aspect} is a disaster.", "The {aspect} is bad.", "The {aspect} is horrible.",
    "The {aspect} is frustrating.", "The {aspect} is the worst I have seen.",
    "The {aspect} is disappointing.", "Zero stars for the {aspect} if I could.",
    "The {aspect} is not good at all.", "The {aspect} is a complete failure.",
    "The {aspect} is subpar.",
)
POSITIVE_GENERAL = (
    "Absolutely love this {noun}.", "Would definitely buy again.", "Highly recommend it.",
    "Exactly as described.", "Best purchase I have made this year.", "Works perfectly.",
    "Great quality for the money.", "Arrived quickly and works great.",
    "My whole family loves it.", "Five stars, no hesitation.", "Worth every penny.",
    "I bought a second one as a gift.", "Really well made.", "Exceeded all my expectations.",
    "Fantastic product.", "Very pleased with this purchase.", "A wonderful {noun}.",
    "This {noun} is a keeper.", "Superb value.", "I am delighted with it.",
    "Could not be happier.",
)
NEUTRAL_GENERAL = (
    "It's okay for the price.", "Does the job, nothing more.", "Average {noun}.",
    "Not great, not terrible.", "It works as expected.", "Decent, but I have seen better.",
    "Some good points, some weak ones.", "Fine for occasional use.", "It's alright.",
    "Middle of the road.", "Acceptable quality.", "I'm on the fence about this one.",
    "Neither impressed nor disappointed.", "Reasonable but unremarkable.",
    "An ordinary {noun}.", "Might look for something else next time.", "Serviceable.",
    "Three stars feels fair.", "It is what it is.", "Meets the basic needs.",
)
NEGATIVE_GENERAL = (
    "Would not buy again.", "Complete waste of money.", "Returned it after a week.",
    "Broke within days.", "Very disappointing {noun}.", "Do not recommend.",
    "Not as described.", "Cheaply made.", "Stopped working almost immediately.",
    "Regret buying this.", "Poor quality overall.", "Save your money.",
    "Worst purchase in a long time.", "Arrived damaged.", "Does not work as advertised.",
    "Total letdown.", "I want a refund.", "Avoid this {noun}.", "Really unhappy with this.",
    "Fell apart quickly.",
)
POSITIVE_SUMMARY = (
    "Love it", "Excellent {noun}", "Highly recommended", "Great value",
    "Exactly what I wanted", "Five stars", "Fantastic", "Superb quality", "Very happy",
    "Perfect {noun}", "Brilliant buy", "Would buy again",
)
NEUTRAL_SUMMARY = (
    "It's okay", "Average", "Decent {noun}", "Okay for the price", "Does the job",
    "Mixed feelings", "Fine", "So-so", "Could be better", "Acceptable",
)
NEGATIVE_SUMMARY = (
    "Disappointed", "Waste of money", "Poor quality", "Do not buy", "Broke quickly",
    "Not worth it", "Terrible {noun}", "Returned it", "Very bad", "Avoid",
)
# Per sentiment class (0 negative, 1 neutral, 2 positive).
ASPECT_BANKS = (NEGATIVE_ASPECT, NEUTRAL_ASPECT, POSITIVE_ASPECT)
GENERAL_BANKS = (NEGATIVE_GENERAL, NEUTRAL_GENERAL, POSITIVE_GENERAL)
SUMMARY_BANKS = (NEGATIVE_SUMMARY, NEUTRAL_SUMMARY, POSITIVE_SUMMARY)

# Sentences that put the reviewer's own personal data into the text.
PII_TEMPLATES: dict[str, tuple[str, ...]] = {
    "name": ("I'm {first} and I use it every day.", "My name is {full}, by the way.",
             "Greetings from {full}!", "{first} here, long-time customer."),
    "email": ("Contact me at {email} if you have questions.",
              "Happy to answer questions: {email}", "Email me at {email} for more photos."),
    "phone": ("Call me on {phone} if you want details.", "You can text me at {phone}.",
              "Seller, please call {phone} about my order."),
}
