"""Built-in synthetic data: raw exports as a marketing team would hand them over.

`generate(config, out_dir)` writes into `out_dir`:

- `customers.csv`, `items.csv`, `events.csv`, `reviews.csv`: the raw tables. They
  carry personal data on purpose (names, e-mail addresses, phone numbers; some
  review texts mention them), so pseudonymization and scrubbing at ingest are
  really exercised. E-mail domains are the reserved `example.*` ones and phone
  numbers come from the ranges that regulators keep for fiction where one exists.
- `<table>.mapping.toml` beside each CSV (canonical field = source column), so the
  files take the generic ingest path.
- `truth/`: the planted truth (latent category preferences, price and promotion
  sensitivity, item quality and popularity, which reviews mention personal data,
  the parameters and seed). It is for evaluation only and must never be ingested:
  it holds no mapping file and lives in a subfolder, which ingest skips.

The behaviour that makes the data learnable, in the order `generate` runs it:

1. Customers get a Dirichlet preference over categories concentrated on 1-3 of
   them, a preferred price level, a price sensitivity, a promotion sensitivity, a
   taste vector and a heavy-tailed activity; items get a latent quality, a
   Zipf-like popularity and a style vector close to their brand's.
2. Sessions are spread over each customer's active window following a daily
   intensity (trend, month, weekday, promotion windows) and an hour-of-day profile.
3. Interactions (one item each) are drawn in order for all customers at once, one
   step at a time: mostly an item of a preferred category (seasonally reweighted),
   among candidates drawn by popularity x quality the one with the best price fit
   and taste match; after a purchase often the complement category (`COMPLEMENTS`)
   or its matching kind of product; within a session often the same category or
   kind of product (comparing alternatives); a clicked but unbought item is often
   revisited; some exploration at random.
4. Each interaction runs the funnel view -> click -> add_to_cart -> purchase on
   its item; every step is likelier for good, well-priced, preferred items, and
   purchase much likelier inside promotion windows for promotion-sensitive people.
5. A share of purchases gets a review whose stars follow the experience (quality,
   price fit, the reviewer's leniency, noise) and whose text is built from phrase
   banks that agree with the stars; a share of reviews mentions the reviewer's
   name, e-mail address or phone number.

Same config and seed give byte-identical files.
"""

from __future__ import annotations

import json
import time
import unicodedata
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from tqdm import tqdm

from core import columns as C

# --- Embedded vocabulary ---------------------------------------------------------------


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

_CALLING_CODES = {"US": "1", "CA": "1", "UK": "44", "DE": "49", "FR": "33", "ES": "34",
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
_ASPECT_BANKS = (NEGATIVE_ASPECT, NEUTRAL_ASPECT, POSITIVE_ASPECT)
_GENERAL_BANKS = (NEGATIVE_GENERAL, NEUTRAL_GENERAL, POSITIVE_GENERAL)
_SUMMARY_BANKS = (NEGATIVE_SUMMARY, NEUTRAL_SUMMARY, POSITIVE_SUMMARY)

# Sentences that put the reviewer's own personal data into the text.
PII_TEMPLATES: dict[str, tuple[str, ...]] = {
    "name": ("I'm {first} and I use it every day.", "My name is {full}, by the way.",
             "Greetings from {full}!", "{first} here, long-time customer."),
    "email": ("Contact me at {email} if you have questions.",
              "Happy to answer questions: {email}", "Email me at {email} for more photos."),
    "phone": ("Call me on {phone} if you want details.", "You can text me at {phone}.",
              "Seller, please call {phone} about my order."),
}

# --- Model constants (recorded in truth/truth.json) -----------------------------------

_FUNNEL = {  # logit = base + appeal coefficient * appeal + promo coefficient * promo effect
    "click": (-0.7, 0.7, 0.6),
    "add_to_cart": (-0.7, 0.7, 0.4),
    "purchase": (-0.3, 0.6, 2.2),
}
_P_NEW_SESSION = 0.6  # an interaction starts a new session
_P_COMPLEMENT = 0.4  # after a purchase, next interaction in the complement category
_P_STAY = 0.5  # within a session, stay in the previous interaction's category
_P_SAME_KIND = 0.5  # of those two: the same kind of product (noun), not just the category
_P_REVISIT = 0.35  # after a click without purchase, come back to that item
_P_EXPLORE = 0.07  # any item, by popularity
_CANDIDATES = 16  # items sampled by popularity x quality before the personal choice
_NOUNS_PER_CATEGORY = 12
assert all(len(c.nouns) == _NOUNS_PER_CATEGORY for c in CATEGORIES)  # noun groups index them
_STYLE_DIM = 2  # latent taste: customers' taste vector . items' style vector
_STYLE_WEIGHT = 0.8  # of the taste match in the choice among candidates
_EVENTS_PER_INTERACTION = 1.98  # measured; turns events_per_customer into interactions
_STAR_CUTS = (-0.15, 0.23, 0.68, 1.34)  # experience thresholds for 2, 3, 4, 5 stars
_SESSION_GAP_S = 300  # least gap between the end of a session and the next one
_EVENT_GAPS_S = ((15, 240), (3, 90), (10, 300), (30, 600))  # before view/click/cart/buy
_REVIEW_DELAY_DAYS = (2, 21)

_WEEKDAY = np.array([1.0, 0.95, 0.95, 1.0, 0.9, 1.2, 1.3])  # Monday first
_MONTH = np.array([0.95, 0.85, 0.9, 0.9, 0.9, 0.9, 0.95, 0.95, 0.95, 1.0, 1.25, 1.35])
_TREND_PER_YEAR = 0.25
_PROMO_DAY_BOOST = 1.6
_HOURS_WEEKDAY = np.array([0.3, 0.15, 0.1, 0.08, 0.08, 0.15, 0.4, 0.8, 1.0, 1.0, 1.0, 1.1,
                           1.4, 1.3, 1.0, 1.0, 1.0, 1.1, 1.5, 1.9, 2.2, 2.1, 1.5, 0.8])
_HOURS_WEEKEND = np.array([0.5, 0.3, 0.15, 0.1, 0.08, 0.1, 0.2, 0.4, 0.8, 1.2, 1.5, 1.6,
                           1.6, 1.5, 1.5, 1.5, 1.4, 1.4, 1.5, 1.7, 1.9, 1.8, 1.3, 0.8])

TABLES = ("customers", "items", "events", "reviews")
# Canonical field -> source column, per table; written as the mapping files.
MAPPINGS: dict[str, dict[str, str]] = {
    "customers": {f: f for f in (C.CUSTOMER_ID, C.NAME, C.EMAIL, C.PHONE, C.AGE, C.CITY,
                                 C.SIGNUP_DATE)},
    "items": {f: f for f in (C.ITEM_ID, C.TITLE, C.BRAND, C.CATEGORY, C.PRICE,
                             C.DESCRIPTION)},
    "events": {f: f for f in (C.CUSTOMER_ID, C.ITEM_ID, C.TIMESTAMP, C.EVENT_TYPE,
                              C.PROMOTION)},
    "reviews": {C.CUSTOMER_ID: C.CUSTOMER_ID, C.NAME: "customer_name", C.ITEM_ID: C.ITEM_ID,
                C.RATING: C.RATING, C.TIMESTAMP: C.TIMESTAMP, C.SUMMARY: C.SUMMARY,
                C.TEXT: C.TEXT},
}
_FUNNEL_TYPES = ("view", "click", "add_to_cart", "purchase")


# --- Configuration and result ---------------------------------------------------------


def default_item_count(customers: int) -> int:
    """Catalogue size that suits a number of customers."""
    return max(200, customers // 50)


@dataclass(frozen=True)
class GeneratorConfig:
    """What to generate. `events_per_customer` is a mean (activity is heavy-tailed;
    everyone views at least 2 items, so means below about 4 come out higher); 100k
    customers at 10 give about a million events. `items` has no automatic default
    from `customers`: see `default_item_count`."""

    customers: int = 2000
    items: int = 400
    events_per_customer: float = 10.0
    review_rate: float = 0.3  # share of purchases that get a review (before the cut-off)
    pii_in_review_rate: float = 0.05  # share of reviews naming the reviewer's name/e-mail/phone
    start: date = date(2023, 1, 1)
    end: date = date(2025, 12, 31)  # inclusive
    seed: int = 0

    def __post_init__(self) -> None:
        least_items = 2 * len(CATEGORIES)
        if self.customers < 1:
            raise ValueError(f"customers={self.customers}: need at least 1 customer.")
        if self.items < least_items:
            raise ValueError(f"items={self.items}: need at least {least_items} items (2 per "
                             f"category); try items={default_item_count(self.customers)}.")
        if self.events_per_customer < 2:
            raise ValueError(f"events_per_customer={self.events_per_customer}: every customer "
                             "has at least 2 events, so the mean must be at least 2.")
        for name in ("review_rate", "pii_in_review_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}={value}: a share, must lie in [0, 1].")
        if self.end <= self.start:
            raise ValueError(f"start={self.start} is not before end={self.end}: swap them.")


@dataclass(frozen=True)
class GeneratedFiles:
    """Where `generate` wrote what. `truth_dir` is for evaluation only: never ingest it."""

    out_dir: Path
    tables: dict[str, Path]  # table -> CSV
    mappings: dict[str, Path]  # table -> mapping TOML beside the CSV
    rows: dict[str, int]  # table -> data rows written
    truth_dir: Path
    seconds: float = field(default=0.0, compare=False)

    def __str__(self) -> str:
        counts = ", ".join(f"{self.rows[t]:,} {t}" for t in TABLES)
        return f"{counts} in {self.out_dir} (truth, not for ingest: {self.truth_dir})"


# --- Calendar -------------------------------------------------------------------------


def promotion_windows(start: date, end: date) -> list[tuple[str, date, date]]:
    """Fixed promotion periods `(name, first day, last day)` (inclusive) that touch
    [start, end]: January sale, spring sale, summer sale and Black Friday week
    (Monday before Thanksgiving to Cyber Monday), every year."""
    windows = []
    for year in range(start.year, end.year + 1):
        nov1 = date(year, 11, 1)
        thanksgiving = nov1 + timedelta(days=(3 - nov1.weekday()) % 7 + 21)
        for name, first, last in (
            ("January sale", date(year, 1, 2), date(year, 1, 15)),
            ("Spring sale", date(year, 4, 10), date(year, 4, 16)),
            ("Summer sale", date(year, 7, 10), date(year, 7, 23)),
            ("Black Friday week", thanksgiving - timedelta(days=3),
             thanksgiving + timedelta(days=4)),
        ):
            if last >= start and first <= end:
                windows.append((name, first, last))
    return windows


def promotion_flags(days: np.ndarray, windows: list[tuple[str, date, date]]) -> np.ndarray:
    """1 where a `datetime64` value falls on a day inside one of `windows`, else 0."""
    days = np.asarray(days).astype("datetime64[D]")
    flags = np.zeros(days.shape, dtype=np.int8)
    for _, first, last in windows:
        flags |= (days >= np.datetime64(first)) & (days <= np.datetime64(last))
    return flags


# --- Generation -----------------------------------------------------------------------


def generate(config: GeneratorConfig, out_dir: Path, *, progress: bool = True) -> GeneratedFiles:
    """Write the raw tables, their mapping files and `truth/` into `out_dir` (created
    if missing; files of an earlier run are overwritten)."""
    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(config.seed)
    bar = tqdm(total=7, desc="generate", unit="stage", disable=not progress, leave=False)

    def stage(name: str) -> None:
        bar.set_postfix_str(name)
        bar.update(1)

    calendar = _calendar(config)
    items, item_truth = _make_items(config, rng)
    stage("items")
    people = _make_people(config, rng)
    stage("customers")
    sessions = _make_sessions(config, calendar, people, rng)
    stage("sessions")
    inter = _simulate_interactions(config, calendar, people, item_truth, sessions, rng, bar)
    stage("interactions")
    events, ev_time, ev_inter = _make_events(config, calendar, people, item_truth["item_id"],
                                             sessions, inter, rng)
    customers = _make_customers_table(config, people, sessions, ev_time, ev_inter, rng)
    stage("events")
    reviews, review_pii = _make_reviews(config, people, item_truth, ev_time, ev_inter,
                                        events, inter, rng)
    stage("reviews")

    frames = {"customers": customers, "items": items, "events": events, "reviews": reviews}
    tables, mappings = {}, {}
    for table in TABLES:
        tables[table] = out_dir / f"{table}.csv"
        frames[table].to_csv(tables[table], index=False, lineterminator="\n",
                             encoding="utf-8", float_format="%.2f")
        mappings[table] = out_dir / f"{table}.mapping.toml"
        mappings[table].write_text(_mapping_toml(table), encoding="utf-8")
    truth_dir = _write_truth(config, out_dir / "truth", people, item_truth, review_pii,
                             calendar)
    stage("written")
    bar.close()
    rows = {t: len(frames[t]) for t in TABLES}
    return GeneratedFiles(out_dir=out_dir, tables=tables, mappings=mappings, rows=rows,
                          truth_dir=truth_dir, seconds=time.perf_counter() - started)


def _mapping_toml(table: str) -> str:
    lines = [
        "# Generated by clearmark's built-in generator: canonical field = source column.",
        f'table = "{table}"',
        "",
        "[columns]",
    ]
    lines += [f'{canonical} = "{source}"' for canonical, source in MAPPINGS[table].items()]
    return "\n".join(lines) + "\n"


class _Calendar(NamedTuple):
    start_s: int  # first second of the range, seconds since the epoch
    end_s: int  # first second after the range
    days: int
    month: np.ndarray  # (days,) 0-11
    weekend: np.ndarray  # (days,) bool
    promo: np.ndarray  # (days,) int8
    cum_all: np.ndarray  # (days + 1,) cumulative daily session intensity
    cum_promo: np.ndarray  # (days + 1,) the same, promotion days only
    windows: list[tuple[str, date, date]]


def _calendar(config: GeneratorConfig) -> _Calendar:
    first = np.datetime64(config.start, "D")
    days = np.arange(first, np.datetime64(config.end, "D") + 1)  # (D,)
    n_days = len(days)
    day_num = days.astype(np.int64)
    weekday = (day_num + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    month = (days.astype("datetime64[M]").astype(np.int64) % 12).astype(np.int64)
    windows = promotion_windows(config.start, config.end)
    promo = promotion_flags(days, windows)
    years = np.arange(n_days) / 365.25
    intensity = (_WEEKDAY[weekday] * _MONTH[month] * (1 + _TREND_PER_YEAR * years)
                 * np.where(promo == 1, _PROMO_DAY_BOOST, 1.0))
    cum_all = np.concatenate([[0.0], np.cumsum(intensity)])
    cum_promo = np.concatenate([[0.0], np.cumsum(intensity * promo)])
    start_s = int(first.astype("datetime64[s]").astype(np.int64))
    return _Calendar(start_s=start_s, end_s=start_s + n_days * 86400, days=n_days,
                     month=month, weekend=weekday >= 5, promo=promo, cum_all=cum_all,
                     cum_promo=cum_promo, windows=windows)


def _ids(prefix: str, n: int, least_width: int) -> np.ndarray:
    width = max(least_width, len(str(n)))
    return np.array([f"{prefix}{i:0{width}d}" for i in range(1, n + 1)], dtype=object)


def _make_items(config: GeneratorConfig, rng: np.random.Generator,
                ) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """The catalogue, and each item's latent quality and popularity."""
    n, k = config.items, len(CATEGORIES)
    shares = np.array([c.share for c in CATEGORIES])
    # Items per category: at least 2 each, the rest by share (largest remainder).
    quota = 2 + shares / shares.sum() * (n - 2 * k)
    counts = np.floor(quota).astype(np.int64)
    counts[np.argsort(-(quota - counts), kind="stable")[: n - counts.sum()]] += 1
    category = rng.permutation(np.repeat(np.arange(k), counts))  # (n,) item order is random

    quality = rng.normal(0.0, 1.0, n)
    # Popularity rank loosely follows quality: good items tend to be popular.
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(-(0.5 * quality + rng.normal(0.0, 1.0, n)), kind="stable")] = np.arange(n)
    popularity = 1.0 / (rank + 1.0) ** 0.7
    popularity /= popularity.sum()

    medians = np.array([c.price_median for c in CATEGORIES])
    sigmas = np.array([c.price_sigma for c in CATEGORIES])
    price_z = rng.normal(0.0, 1.0, n)
    price = np.maximum(np.round(medians[category] * np.exp(sigmas[category] * price_z)), 2.0)
    price = price - 0.01  # shelf prices end in .99
    price_z = (np.log(price) - np.log(medians[category])) / sigmas[category]

    picks = rng.integers(0, 1 << 30, (n, 6))
    # Style: items of one brand look alike, so brand loyalty shows in the text too.
    n_brands = max(len(c.brands) for c in CATEGORIES)
    brand_style = rng.normal(0.0, 1.0, (len(CATEGORIES), n_brands, _STYLE_DIM))
    brand_of = np.array([picks[i, 0] % len(CATEGORIES[category[i]].brands) for i in range(n)])
    style = 0.8 * brand_style[category, brand_of] + 0.6 * rng.normal(0.0, 1.0, (n, _STYLE_DIM))
    noun_of = np.array([picks[i, 2] % _NOUNS_PER_CATEGORY for i in range(n)])
    titles, brands, nouns, descriptions = [], [], [], []
    for i in range(n):
        spec = CATEGORIES[category[i]]
        p = picks[i]
        brand = spec.brands[p[0] % len(spec.brands)]
        adjective = spec.adjectives[p[1] % len(spec.adjectives)]
        noun = spec.nouns[noun_of[i]]
        feature = spec.features[p[3] % len(spec.features)]
        use = spec.uses[p[4] % len(spec.uses)]
        titles.append(f"{brand} {adjective} {noun}")
        brands.append(brand)
        nouns.append(noun.lower())
        sentence = f"{adjective} {noun.lower()} from {brand}, made with {feature}."
        if p[5] % 3:
            sentence += f" Ideal for {use}."
        descriptions.append(sentence)
    titles_s = pd.Series(titles)
    repeat = titles_s.groupby(titles_s).cumcount().to_numpy()
    variants = ("II", "Plus", "Pro", "Mini", "XL", "Classic", "Lite", "Max")
    titles = [t if r == 0 else f"{t} {variants[(r - 1) % len(variants)]}"
              + (f" {(r - 1) // len(variants) + 2}" if r > len(variants) else "")
              for t, r in zip(titles, repeat, strict=True)]

    item_ids = _ids("P", n, 5)
    table = pd.DataFrame({
        C.ITEM_ID: item_ids,
        C.TITLE: titles,
        C.BRAND: brands,
        C.CATEGORY: np.array(CATEGORY_NAMES, dtype=object)[category],
        C.PRICE: price,
        C.DESCRIPTION: descriptions,
    })
    truth = {"item_id": item_ids, "category": category, "quality": quality,
             "popularity": popularity, "price": price, "price_z": price_z, "style": style,
             "noun_group": category * _NOUNS_PER_CATEGORY + noun_of,
             "noun": np.array(nouns, dtype=object)}  # the noun, for review text
    return table, truth


def _make_people(config: GeneratorConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Latent traits and identities of the customers (one row each)."""
    n, k = config.customers, len(CATEGORIES)
    shares = np.array([c.share for c in CATEGORIES])

    # Category preference: 1-3 favourites (Gumbel top-k by market share), Dirichlet-like
    # weights on them, a little mass everywhere.
    n_fav = rng.choice([1, 2, 3], size=n, p=[0.35, 0.40, 0.25])
    order = np.argsort(-(np.log(shares) + rng.gumbel(size=(n, k))), axis=1)  # (n, k)
    weights = rng.gamma(2.0, 1.0, size=(n, k)) * (np.arange(k) < n_fav[:, None])
    focused = np.zeros((n, k))
    np.put_along_axis(focused, order, weights, axis=1)
    focused /= focused.sum(axis=1, keepdims=True)
    pref = 0.85 * focused + 0.15 * rng.dirichlet(np.full(k, 0.5), size=n)  # (n, k)

    activity_sigma = 1.0
    activity = rng.lognormal(-0.5 * activity_sigma**2, activity_sigma, n)  # mean 1
    first_name = rng.integers(0, len(FIRST_NAMES), n)
    last_name = rng.integers(0, len(LAST_NAMES), n)
    city_w = np.array([c.weight for c in CITIES])
    return {
        "customer_id": _ids("C", n, 6),
        "pref": pref,
        "price_level": rng.normal(0.0, 0.7, n),  # preferred price, in category std units
        "price_sensitivity": rng.lognormal(0.0, 0.5, n),
        "promo_sensitivity": rng.beta(1.5, 2.5, n),
        "activity": activity,
        "leniency": rng.normal(0.0, 0.35, n),
        "taste": rng.normal(0.0, 1.0, (n, _STYLE_DIM)),
        "first": first_name,
        "last": last_name,
        "city": rng.choice(len(CITIES), size=n, p=city_w / city_w.sum()),
        "age": np.clip(np.round(18 + rng.gamma(3.0, 7.5, n)), 18, 85).astype(np.int64),
    }


class _Sessions(NamedTuple):
    inter_cust: np.ndarray  # (N,) customer of each interaction, sorted by customer then time
    inter_sess: np.ndarray  # (N,) session of each interaction
    inter_new: np.ndarray  # (N,) bool, first interaction of its session
    sess_cust: np.ndarray  # (S,)
    sess_start: np.ndarray  # (S,) seconds since epoch, increasing within customer
    sess_day: np.ndarray  # (S,) day index
    first_active: np.ndarray  # (n,) day index
    last_active: np.ndarray  # (n,) day index


def _group_starts(groups: np.ndarray) -> np.ndarray:
    """Index of the first row of each row's group, for rows sorted by group."""
    new = np.ones(len(groups), dtype=bool)
    new[1:] = groups[1:] != groups[:-1]
    return np.maximum.accumulate(np.where(new, np.arange(len(groups)), 0))


def _make_sessions(config: GeneratorConfig, cal: _Calendar, people: dict[str, np.ndarray],
                   rng: np.random.Generator) -> _Sessions:
    n = config.customers
    # Active window: some customers are there from the start, the rest arrive over time
    # (more later: the shop grows); lifetimes are long for active customers.
    d = cal.days
    early = rng.random(n) < 0.3
    arrives = np.where(early, 0, np.floor(d * rng.random(n) ** 0.8))
    lifetime = rng.exponential(np.where(early, 900.0, 540.0)) * np.sqrt(people["activity"])
    first_active = arrives.astype(np.int64)
    last_active = np.minimum(d - 1, first_active + 14 + lifetime.astype(np.int64))

    # Interactions per customer: 2 + Poisson of the heavy-tailed activity times the
    # (sublinear) shopping time in the window, scaled to the configured mean.
    mass = cal.cum_all[last_active + 1] - cal.cum_all[first_active]
    exposure = people["activity"] * (mass / mass.mean()) ** 0.7
    mean_inter = config.events_per_customer / _EVENTS_PER_INTERACTION
    extra = rng.poisson(exposure / exposure.mean() * max(mean_inter - 2.0, 0.0))
    # At most 20 a day of the window, so that the sessions fit in it.
    n_inter = 2 + np.minimum(extra, 20 * (last_active - first_active + 1) - 2)
    inter_cust = np.repeat(np.arange(n), n_inter)  # (N,)
    n_all = len(inter_cust)
    inter_new = rng.random(n_all) < _P_NEW_SESSION
    inter_new[_group_starts(inter_cust) == np.arange(n_all)] = True
    inter_sess = np.cumsum(inter_new) - 1  # (N,)
    sess_cust = inter_cust[inter_new]  # (S,)
    n_sess = len(sess_cust)

    # Session days: the calendar's intensity restricted to the window; promotion-
    # sensitive customers come back during promotions more often.
    lo, hi = first_active[sess_cust], last_active[sess_cust] + 1
    use_promo = rng.random(n_sess) < 0.3 * people["promo_sensitivity"][sess_cust]
    use_promo &= cal.cum_promo[hi] > cal.cum_promo[lo]
    u = rng.random(n_sess)
    day_all = np.searchsorted(cal.cum_all, cal.cum_all[lo] + u * (cal.cum_all[hi]
                                                                  - cal.cum_all[lo]),
                              side="right") - 1
    day_promo = np.searchsorted(cal.cum_promo, cal.cum_promo[lo] + u * (cal.cum_promo[hi]
                                                                        - cal.cum_promo[lo]),
                                side="right") - 1
    day = np.clip(np.where(use_promo, day_promo, day_all), lo, hi - 1)

    hours_wd = np.cumsum(_HOURS_WEEKDAY) / _HOURS_WEEKDAY.sum()
    hours_we = np.cumsum(_HOURS_WEEKEND) / _HOURS_WEEKEND.sum()
    uh = rng.random(n_sess)
    hour = np.where(cal.weekend[day], np.searchsorted(hours_we, uh, side="right"),
                    np.searchsorted(hours_wd, uh, side="right"))
    start = cal.start_s + day * 86400 + np.minimum(hour, 23) * 3600 + rng.integers(0, 3600,
                                                                                    n_sess)
    # Sessions are exchangeable within a customer: sort the start times.
    start = start[np.lexsort((start, sess_cust))]
    return _Sessions(inter_cust=inter_cust, inter_sess=inter_sess, inter_new=inter_new,
                     sess_cust=sess_cust, sess_start=start,
                     sess_day=(start - cal.start_s) // 86400, first_active=first_active,
                     last_active=last_active)


class _Interactions(NamedTuple):
    item: np.ndarray  # (N,)
    clicked: np.ndarray  # (N,) bool
    carted: np.ndarray
    bought: np.ndarray
    fit: np.ndarray  # (N,) log price fit of the item for the customer (<= 0)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _group_sampler(groups: np.ndarray, weight: np.ndarray, n_groups: int,
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Items sorted by group, and one cumulative weight array in which group g spans
    (g, g + 1]: `order[searchsorted(cum, g + u, "right")]` draws from group g by weight
    for u in [0, 1). Also each group's size (an empty group cannot be drawn from)."""
    order = np.argsort(groups, kind="stable")
    sorted_groups = groups[order]
    cum_w = np.concatenate([[0.0], np.cumsum(weight[order])])
    first = np.searchsorted(sorted_groups, np.arange(n_groups))
    stop = np.searchsorted(sorted_groups, np.arange(n_groups), side="right")
    base, total = cum_w[first], cum_w[stop] - cum_w[first]
    cum = sorted_groups + (cum_w[1:] - base[sorted_groups]) / total[sorted_groups]
    filled = stop > first
    cum[stop[filled] - 1] = np.arange(n_groups)[filled] + 1.0  # exact segment ends
    return order, cum, stop - first


def _simulate_interactions(config: GeneratorConfig, cal: _Calendar,
                           people: dict[str, np.ndarray], items: dict[str, np.ndarray],
                           s: _Sessions, rng: np.random.Generator, bar: tqdm,
                           ) -> _Interactions:
    """Choose each interaction's item and run its funnel, one step at a time for all
    customers at once (step t = every customer's t-th interaction)."""
    k, n_nouns = len(CATEGORIES), _NOUNS_PER_CATEGORY
    n_all, n_items = len(s.inter_cust), len(items["quality"])
    item_cat, item_noun = items["category"], items["noun_group"]
    quality, price_z, style = items["quality"], items["price_z"], items["style"]
    pref, level, taste = people["pref"], people["price_level"], people["taste"]
    sens, promo_sens = people["price_sensitivity"], people["promo_sensitivity"]
    season = np.array([c.season for c in CATEGORIES]).T  # (12, k)
    complement = np.array([CATEGORY_NAMES.index(COMPLEMENTS[c]) for c in CATEGORY_NAMES])

    # Draws by popularity x quality: within a category, within a noun group (the same
    # kind of product, e.g. tents), or from the whole catalogue.
    weight = items["popularity"] * np.exp(0.5 * quality)
    cat_order, cat_cum, _ = _group_sampler(item_cat, weight, k)
    noun_order, noun_cum, noun_size = _group_sampler(item_noun, weight, k * n_nouns)
    global_cum = np.cumsum(weight) / weight.sum()

    step = np.arange(n_all) - _group_starts(s.inter_cust)
    order = np.argsort(step, kind="stable")
    bounds = np.searchsorted(step[order], np.arange(step.max() + 2))
    item = np.zeros(n_all, dtype=np.int64)
    clicked = np.zeros(n_all, dtype=bool)
    carted = np.zeros(n_all, dtype=bool)
    bought = np.zeros(n_all, dtype=bool)
    fit = np.zeros(n_all)
    for t in range(len(bounds) - 1):
        rows = order[bounds[t]:bounds[t + 1]]
        m = len(rows)
        cust, sess = s.inter_cust[rows], s.inter_sess[rows]
        day = s.sess_day[sess]

        # Where to look: a category by preference x season; after a purchase often the
        # complement (category, or the matching kind of product); within a session
        # often the same category or the same kind of product; a clicked item unbought
        # is often revisited.
        w = pref[cust] * season[cal.month[day]]  # (m, k)
        cw = np.cumsum(w, axis=1)
        cat = (cw < (rng.random(m) * cw[:, -1])[:, None]).sum(axis=1)
        noun = np.full(m, -1)  # noun group to draw from, -1: the category
        mode, narrow = rng.random(m), rng.random(m) < _P_SAME_KIND
        revisit = np.zeros(m, dtype=bool)
        if t > 0:
            prev = rows - 1
            prev_item = item[prev]
            prev_cat, prev_noun = item_cat[prev_item], item_noun[prev_item]
            comp = bought[prev] & (mode < _P_COMPLEMENT)
            stay = ~bought[prev] & (s.inter_sess[prev] == sess) & (mode < _P_STAY)
            revisit = clicked[prev] & ~bought[prev] & (mode >= 1.0 - _P_REVISIT)
            comp_noun = complement[prev_cat] * n_nouns + prev_noun % n_nouns
            cat = np.where(comp, complement[prev_cat], np.where(stay, prev_cat, cat))
            noun = np.where(comp & narrow, comp_noun, np.where(stay & narrow, prev_noun, -1))
            noun = np.where((noun >= 0) & (noun_size[np.maximum(noun, 0)] > 0), noun, -1)

        # Which item: candidates by popularity x quality; price fit and taste choose.
        u = rng.random((m, _CANDIDATES))
        by_cat = cat_order[np.minimum(np.searchsorted(cat_cum, cat[:, None] + u, "right"),
                                      n_items - 1)]
        by_noun = noun_order[np.minimum(np.searchsorted(noun_cum, noun[:, None] + u, "right"),
                                        n_items - 1)]
        cand = np.where((noun >= 0)[:, None], by_noun, by_cat)  # (m, candidates)
        cand_fit = -0.5 * sens[cust, None] * (price_z[cand] - level[cust, None]) ** 2
        cand_taste = np.einsum("md,mcd->mc", taste[cust], style[cand])
        score = cand_fit + _STYLE_WEIGHT * cand_taste + rng.gumbel(size=(m, _CANDIDATES))
        chosen = cand[np.arange(m), np.argmax(score, axis=1)]
        explore = rng.random(m) < _P_EXPLORE
        anywhere = np.minimum(np.searchsorted(global_cum, rng.random(m), "right"), n_items - 1)
        chosen = np.where(explore, anywhere, chosen)
        if t > 0:
            chosen = np.where(revisit, prev_item, chosen)

        # The funnel on the chosen item.
        item_fit = -0.5 * sens[cust] * (price_z[chosen] - level[cust]) ** 2
        affinity = np.clip(np.log(k * pref[cust, item_cat[chosen]]), -2.0, 1.5)
        taste_match = np.einsum("md,md->m", taste[cust], style[chosen])
        appeal = 0.8 * quality[chosen] + 0.8 * item_fit + 0.5 * affinity + 0.3 * taste_match
        promo_effect = cal.promo[day] * promo_sens[cust]
        passed = []
        for name in ("click", "add_to_cart", "purchase"):
            base, a, b = _FUNNEL[name]
            passed.append(rng.random(m) < _sigmoid(base + a * appeal + b * promo_effect))
        item[rows], fit[rows] = chosen, item_fit
        clicked[rows] = passed[0]
        carted[rows] = passed[0] & passed[1]
        bought[rows] = passed[0] & passed[1] & passed[2]
        bar.set_postfix_str(f"interactions: step {t}, {m:,} customers", refresh=False)
    return _Interactions(item=item, clicked=clicked, carted=carted, bought=bought, fit=fit)


def _make_events(config: GeneratorConfig, cal: _Calendar, people: dict[str, np.ndarray],
                 item_ids: np.ndarray, s: _Sessions, inter: _Interactions,
                 rng: np.random.Generator) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Expand interactions into funnel events with increasing timestamps per customer;
    also each event's time (seconds since the epoch) and interaction."""
    n_ev = 1 + inter.clicked.astype(np.int64) + inter.carted + inter.bought  # (N,)
    ev_inter = np.repeat(np.arange(len(n_ev)), n_ev)  # (E,)
    pos = np.arange(len(ev_inter)) - np.repeat(np.cumsum(n_ev) - n_ev, n_ev)  # 0..3 = type
    ev_sess = s.inter_sess[ev_inter]

    lo = np.array([g[0] for g in _EVENT_GAPS_S])[pos]
    hi = np.array([g[1] for g in _EVENT_GAPS_S])[pos]
    gap = lo + np.floor(rng.random(len(pos)) * (hi - lo)).astype(np.int64)
    gap[(pos == 0) & s.inter_new[ev_inter]] = 0  # a session opens with its first view
    cum = np.cumsum(gap)
    first_of_sess = _group_starts(ev_sess)
    offset = cum - cum[first_of_sess]  # (E,) seconds since the session's start

    # Sessions of one customer must not overlap: push starts so that each begins at
    # least _SESSION_GAP_S after the previous one ends (a running max within customer).
    last_of_sess = np.r_[np.flatnonzero(np.diff(ev_sess)), len(ev_sess) - 1]
    span = offset[last_of_sess] + _SESSION_GAP_S  # (S,)
    before = np.cumsum(span) - span
    before -= before[_group_starts(s.sess_cust)]
    key = s.sess_start - before  # start_i = before_i + max over earlier j of key_j
    shift = key.min()
    big = int(key.max() - shift) + 1  # customers' blocks cannot mix in the running max
    running = np.maximum.accumulate(key - shift + s.sess_cust * big) - s.sess_cust * big
    start = running + shift + before  # (S,)
    time_s = start[ev_sess] + offset

    # A customer whose last session runs past the range moves back as a whole.
    ev_cust = s.inter_cust[ev_inter]
    cust_last = np.zeros(config.customers, dtype=np.int64)
    np.maximum.at(cust_last, ev_cust, time_s)
    overflow = np.maximum(cust_last - (cal.end_s - 1), 0)
    time_s = time_s - overflow[ev_cust]
    assert time_s.min() >= cal.start_s, "a customer was pushed before the start"

    day = (time_s - cal.start_s) // 86400
    # Categoricals: a million rows of repeated ids build and write far faster.
    events = pd.DataFrame({
        C.CUSTOMER_ID: pd.Categorical.from_codes(ev_cust, people["customer_id"]),
        C.ITEM_ID: pd.Categorical.from_codes(inter.item[ev_inter], item_ids),
        C.EVENT_TYPE: pd.Categorical.from_codes(pos, _FUNNEL_TYPES),
        C.TIMESTAMP: np.datetime_as_string(time_s.astype("datetime64[s]"), unit="s"),
        C.PROMOTION: cal.promo[day],
    })
    return events, time_s, ev_inter


def _ascii_slug(text: str) -> str:
    folded = text.translate(str.maketrans({"ø": "o", "Ø": "O", "ß": "ss", "æ": "ae",
                                           "ł": "l"}))
    folded = unicodedata.normalize("NFKD", folded).encode("ascii", "ignore").decode()
    return "".join(ch for ch in folded.lower() if ch.isalnum())


def _phone(city: City, digits: np.ndarray, style: int) -> str:
    """One phone number of `city` in one of its country's common formats."""
    it = iter(digits)
    groups = "".join(str(next(it)) if ch == "#" else ch for ch in city.phone).split(" ")
    cc = _CALLING_CODES[city.country]
    if city.country in ("US", "CA"):
        a, b, c = groups
        forms = (f"+1 {a}-{b}-{c}", f"({a}) {b}-{c}", f"{a}-{b}-{c}", f"{a}.{b}.{c}",
                 f"+1 ({a}) {b}-{c}", f"1-{a}-{b}-{c}", f"+1{a}{b}{c}")
    elif city.country in ("ES", "IT"):  # no trunk prefix
        forms = (f"+{cc} " + " ".join(groups), " ".join(groups), f"+{cc}" + "".join(groups))
    else:
        national = "0" + " ".join(groups)
        forms = [f"+{cc} " + " ".join(groups), national, f"+{cc}" + "".join(groups)]
        if city.country in ("UK", "DE"):
            forms.append(f"+{cc} (0)" + " ".join(groups))
        if city.country == "DE":
            forms.append(f"0{groups[0]}/{''.join(groups[1:])}")
        if city.country == "FR":
            forms.append("0" + ".".join(groups))
        if city.country == "NL":
            forms.append(f"0{groups[0]}-{''.join(groups[1:])}")
        if city.country == "AU":
            forms.append(f"(0{groups[0]}) " + " ".join(groups[1:]))
    return forms[style % len(forms)]


def _identities(config: GeneratorConfig, people: dict[str, np.ndarray],
                rng: np.random.Generator) -> dict[str, list[str]]:
    """Names, e-mail addresses, phone numbers and review display names."""
    n = config.customers
    first = [FIRST_NAMES[i] for i in people["first"]]
    last = [LAST_NAMES[i] for i in people["last"]]
    first_slug = [_ascii_slug(x) for x in FIRST_NAMES]
    last_slug = [_ascii_slug(x) for x in LAST_NAMES]
    pattern = rng.integers(0, 7, n)
    number = rng.integers(1, 100, n)
    year = rng.integers(60, 100, n) % 100
    domain = rng.integers(0, len(EMAIL_DOMAINS), n)
    locals_ = []
    for i in range(n):
        f, g = first_slug[people["first"][i]], last_slug[people["last"][i]]
        locals_.append((f"{f}.{g}", f"{f}{g}", f"{f[0]}{g}", f"{f}_{g}", f"{g}.{f}",
                        f"{f}.{g}{year[i]:02d}", f"{f}{number[i]}")[pattern[i]])
    local_s = pd.Series([f"{loc}@{EMAIL_DOMAINS[d]}" for loc, d in zip(locals_, domain,
                                                                        strict=True)])
    dup = local_s.groupby(local_s).cumcount().to_numpy()  # the 2nd, 3rd ... get a number
    email = [e if r == 0 else e.replace("@", f".{r + 1}@", 1)
             for e, r in zip(local_s, dup, strict=True)]

    digits = rng.integers(0, 10, (n, 8))
    style = rng.integers(0, 1 << 20, n)
    phone = [_phone(CITIES[people["city"][i]], digits[i], style[i]) for i in range(n)]

    # Review display names, as shops show them: full, "First L.", first only, handle.
    display_kind = rng.choice(4, size=n, p=[0.5, 0.3, 0.1, 0.1])
    display = []
    for i in range(n):
        kind = display_kind[i]
        if kind == 0:
            display.append(f"{first[i]} {last[i]}")
        elif kind == 1:
            display.append(f"{first[i]} {last[i][0].upper()}.")
        elif kind == 2:
            display.append(first[i])
        else:
            display.append(f"{first_slug[people['first'][i]]}{number[i]}")
    return {"first": first, "last": last, "email": email, "phone": phone, "display": display}


def _make_customers_table(config: GeneratorConfig, people: dict[str, np.ndarray],
                          s: _Sessions, ev_time: np.ndarray, ev_inter: np.ndarray,
                          rng: np.random.Generator) -> pd.DataFrame:
    """The customers export; also adds the identities to `people` (for reviews)."""
    ids = _identities(config, people, rng)
    people.update({f"id_{k}": np.array(v, dtype=object) for k, v in ids.items()})
    n = config.customers
    first_ts = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(first_ts, s.inter_cust[ev_inter], ev_time)
    # Signed up at least a day before the first event; customers already there when the
    # range starts signed up long before.
    early = s.first_active == 0
    wait = np.floor(rng.exponential(np.where(early, 700.0, 90.0))).astype(np.int64)
    signup = (first_ts // 86400 - 1 - wait).astype("datetime64[D]")
    return pd.DataFrame({
        C.CUSTOMER_ID: people["customer_id"],
        C.NAME: [f"{f} {g}" for f, g in zip(ids["first"], ids["last"], strict=True)],
        C.EMAIL: ids["email"],
        C.PHONE: ids["phone"],
        C.AGE: people["age"],
        C.CITY: [CITIES[i].name for i in people["city"]],
        C.SIGNUP_DATE: np.datetime_as_string(signup, unit="D"),
    })


def _make_reviews(config: GeneratorConfig, people: dict[str, np.ndarray],
                  item_truth: dict[str, np.ndarray], ev_time: np.ndarray,
                  ev_inter: np.ndarray, events: pd.DataFrame, inter: _Interactions,
                  rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reviews of a share of purchases (stars follow the experience, text the stars),
    and which of them carry the reviewer's personal data."""
    end_s = int(np.datetime64(config.end + timedelta(days=1), "s").astype(np.int64))
    purchase = np.flatnonzero(events[C.EVENT_TYPE].to_numpy() == "purchase")
    reviewed = purchase[rng.random(len(purchase)) < config.review_rate]
    delay = rng.integers(_REVIEW_DELAY_DAYS[0] * 86400, _REVIEW_DELAY_DAYS[1] * 86400,
                         len(reviewed))
    when = ev_time[reviewed] + delay
    keep = when < end_s  # reviews after the export's cut-off do not exist yet
    reviewed, when = reviewed[keep], when[keep]
    inter_idx = ev_inter[reviewed]
    item = inter.item[inter_idx]
    cust = events[C.CUSTOMER_ID].cat.codes.to_numpy()[reviewed]  # row in `people`

    m = len(reviewed)
    experience = (1.0 * item_truth["quality"][item] + 0.5 * inter.fit[inter_idx]
                  + people["leniency"][cust] + rng.normal(0.0, 0.7, m))
    stars = 1 + np.searchsorted(np.array(_STAR_CUTS), experience)  # (m,) 1..5

    # Sentiment of each aspect sentence: mostly the review's own, sometimes not.
    # Rows: stars 1..5; columns: negative, neutral, positive.
    aspect_mix = np.array([[0.95, 0.04, 0.01], [0.75, 0.17, 0.08], [0.25, 0.5, 0.25],
                           [0.08, 0.17, 0.75], [0.01, 0.04, 0.95]])
    review_class = np.array([0, 0, 1, 2, 2])[stars - 1]
    n_aspects = 1 + (rng.random(m) < 0.6)
    aspect_class = np.stack([(np.cumsum(aspect_mix[stars - 1], axis=1)
                              < rng.random(m)[:, None]).sum(axis=1) for _ in range(2)], axis=1)
    picks = rng.integers(0, 1 << 30, (m, 8))
    closing = rng.random(m) < 0.5

    pii = rng.random(m) < config.pii_in_review_rate
    pii_kind = rng.choice(["name", "email", "phone"], size=m, p=[0.4, 0.3, 0.3])
    pii_front = rng.random(m) < 0.5
    categories = item_truth["category"]
    ids = {k.removeprefix("id_"): v for k, v in people.items() if k.startswith("id_")}

    texts, summaries, pii_rows = [], [], []
    for j in range(m):
        spec = CATEGORIES[categories[item[j]]]
        noun = item_truth["noun"][item[j]]
        cls, p = review_class[j], picks[j]
        aspects = spec.aspects + GENERIC_ASPECTS
        sentences = [_GENERAL_BANKS[cls][p[0] % len(_GENERAL_BANKS[cls])].format(noun=noun)]
        first_aspect = p[1] % len(aspects)
        for a in range(n_aspects[j]):
            aspect = aspects[(first_aspect + a * (1 + p[2] % (len(aspects) - 1)))
                             % len(aspects)]
            bank = _ASPECT_BANKS[aspect_class[j, a]]
            sentences.append(bank[p[3 + a] % len(bank)].format(aspect=aspect))
        if closing[j]:
            bank = _GENERAL_BANKS[cls]
            extra = bank[(p[0] + 1 + p[5] % (len(bank) - 1)) % len(bank)].format(noun=noun)
            sentences.append(extra)
        if pii[j]:
            c = cust[j]
            kind = pii_kind[j]
            first, last = ids["first"][c], ids["last"][c]
            value = {"name": first, "email": ids["email"][c], "phone": ids["phone"][c]}[kind]
            template = PII_TEMPLATES[kind][p[6] % len(PII_TEMPLATES[kind])]
            if "{full}" in template:
                value = f"{first} {last}"
            sentence = template.format(first=first, full=value, email=value, phone=value)
            sentences.insert(0 if pii_front[j] else len(sentences), sentence)
            pii_rows.append((j, kind, value))
        texts.append(" ".join(sentences))
        summary_bank = _SUMMARY_BANKS[cls]
        summaries.append(summary_bank[p[7] % len(summary_bank)].format(noun=noun))

    reviews = pd.DataFrame({
        C.CUSTOMER_ID: people["customer_id"][cust],
        "customer_name": [ids["display"][c] for c in cust],
        C.ITEM_ID: item_truth["item_id"][item],
        C.RATING: stars.astype(np.int64),
        C.TIMESTAMP: np.datetime_as_string(when.astype("datetime64[s]"), unit="s"),
        C.SUMMARY: summaries,
        C.TEXT: texts,
    })
    # One customer's reviews in time order, customers in id order (like the events).
    order = np.lexsort((when, cust))
    reviews = reviews.iloc[order].reset_index(drop=True)
    position = np.empty(m, dtype=np.int64)
    position[order] = np.arange(m)
    review_pii = pd.DataFrame(pii_rows, columns=["review_row", "kind", "value"])
    review_pii["review_row"] = position[review_pii["review_row"].to_numpy(dtype=np.int64)]
    review_pii.insert(1, "customer_id", reviews[C.CUSTOMER_ID].to_numpy()[
        review_pii["review_row"].to_numpy()])
    review_pii = review_pii.sort_values("review_row", kind="stable").reset_index(drop=True)
    return reviews, review_pii


def _write_truth(config: GeneratorConfig, truth_dir: Path, people: dict[str, np.ndarray],
                 item_truth: dict[str, np.ndarray], review_pii: pd.DataFrame,
                 cal: _Calendar) -> Path:
    """The planted truth, for evaluation only (never ingested)."""
    truth_dir.mkdir(parents=True, exist_ok=True)
    customers = pd.DataFrame({"customer_id": people["customer_id"]})
    for i, name in enumerate(CATEGORY_NAMES):
        customers[f"pref_{name}"] = people["pref"][:, i]
    customers["top_category"] = np.array(CATEGORY_NAMES, dtype=object)[
        people["pref"].argmax(axis=1)]
    for name in ("price_level", "price_sensitivity", "promo_sensitivity", "activity",
                 "leniency"):
        customers[name] = people[name]
    for d in range(_STYLE_DIM):
        customers[f"taste_{d}"] = people["taste"][:, d]
    customers.to_parquet(truth_dir / "customers.parquet", index=False)
    pd.DataFrame({
        "item_id": item_truth["item_id"],
        "category": np.array(CATEGORY_NAMES, dtype=object)[item_truth["category"]],
        "quality": item_truth["quality"],
        "popularity": item_truth["popularity"],
        "price_z": item_truth["price_z"],
        **{f"style_{d}": item_truth["style"][:, d] for d in range(_STYLE_DIM)},
    }).to_parquet(truth_dir / "items.parquet", index=False)
    review_pii.to_parquet(truth_dir / "review_pii.parquet", index=False)

    params = {k: (v.isoformat() if isinstance(v, date) else v)
              for k, v in asdict(config).items()}
    meta = {
        "note": "Planted truth of clearmark's generator, for evaluation only. "
                "Never ingest these files into the warehouse.",
        "config": params,
        "categories": list(CATEGORY_NAMES),
        "complements": COMPLEMENTS,
        "seasonality": {c.name: list(c.season) for c in CATEGORIES},
        "promotion_windows": [{"name": n, "first": f.isoformat(), "last": la.isoformat()}
                              for n, f, la in cal.windows],
        "funnel_logits": {k: {"base": v[0], "appeal": v[1], "promo": v[2]}
                          for k, v in _FUNNEL.items()},
        "appeal": "0.8*quality + 0.8*price_fit + 0.5*clip(log(K*pref[category]), -2, 1.5)"
                  " + 0.3*taste.style",
        "price_fit": "-0.5*price_sensitivity*(item price_z - customer price_level)^2",
        "item_choice": f"{_CANDIDATES} candidates drawn by popularity*exp(0.5*quality) from "
                       f"the category or kind of product; the largest price_fit + "
                       f"{_STYLE_WEIGHT}*taste.style + Gumbel noise wins",
        "promo_effect": "promotion (0/1) * promo_sensitivity",
        "review_experience": "quality + 0.5*price_fit + leniency + N(0, 0.7)",
        "star_cuts": list(_STAR_CUTS),
        "transitions": {"new_session": _P_NEW_SESSION, "complement_after_purchase":
                        _P_COMPLEMENT, "stay_in_session_category": _P_STAY,
                        "same_kind_of_product_when_complement_or_stay": _P_SAME_KIND,
                        "complement_kind_of_product": "noun j of a category -> noun j of "
                                                      "its complement category",
                        "revisit_clicked_item": _P_REVISIT, "explore": _P_EXPLORE},
        "files": {
            "customers.parquet": "per customer: category preference pref_* (sums to 1), "
                                 "top_category, price_level, price_sensitivity, "
                                 "promo_sensitivity, activity, leniency, taste_*",
            "items.parquet": "per item: category, quality (N(0,1)), popularity (sums to 1), "
                             "price_z (log price in category std units), style_*",
            "review_pii.parquet": "reviews.csv rows (0-based) whose text carries the "
                                  "reviewer's personal data, with the exact string",
        },
    }
    (truth_dir / "truth.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False)
                                          + "\n", encoding="utf-8")
    (truth_dir / "README.txt").write_text(
        "Planted truth of the synthetic data one folder up. For evaluation only:\n"
        "never ingest these files; they are not raw data and carry no mapping.\n",
        encoding="utf-8")
    return truth_dir
