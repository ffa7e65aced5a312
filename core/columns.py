"""Column names, defined once and used everywhere as defaults.

The canonical fields of each raw table are what a mapping file may point
at; the warehouse columns are what is stored after pseudonymization.
"""

# Canonical raw fields (what a source file is mapped onto).
CUSTOMER_ID = "customer_id"
ITEM_ID = "item_id"
TIMESTAMP = "timestamp"
EVENT_TYPE = "event_type"
PROMOTION = "promotion"
RATING = "rating"
TEXT = "text"
SUMMARY = "summary"
NAME = "name"
EMAIL = "email"
PHONE = "phone"
ADDRESS = "address"
AGE = "age"
CITY = "city"
POSTCODE = "postcode"
SIGNUP_DATE = "signup_date"
TITLE = "title"
BRAND = "brand"
CATEGORY = "category"
PRICE = "price"
DESCRIPTION = "description"
VERIFIED = "verified"
HELPFUL_VOTES = "helpful_votes"

# Fields that identify a person directly: read only to scrub free text
# (the name), never written anywhere.
DIRECT_IDENTIFIERS = (NAME, EMAIL, PHONE, ADDRESS)

# Fields each raw table may carry, and the ones it must carry.
TABLE_FIELDS = {
    "customers": (CUSTOMER_ID, NAME, EMAIL, PHONE, ADDRESS, AGE, CITY, POSTCODE, SIGNUP_DATE),
    "items": (ITEM_ID, TITLE, BRAND, CATEGORY, PRICE, DESCRIPTION),
    "events": (CUSTOMER_ID, ITEM_ID, TIMESTAMP, EVENT_TYPE, PROMOTION),
    "reviews": (
        CUSTOMER_ID, ITEM_ID, TIMESTAMP, RATING, TEXT, SUMMARY, NAME, VERIFIED, HELPFUL_VOTES,
    ),
}
REQUIRED_FIELDS = {
    "customers": (CUSTOMER_ID,),
    "items": (ITEM_ID, TITLE),
    "events": (CUSTOMER_ID, ITEM_ID, TIMESTAMP),
    "reviews": (CUSTOMER_ID, ITEM_ID, TIMESTAMP, RATING),
}

EVENT_TYPES = ("view", "click", "add_to_cart", "purchase", "review")

# Warehouse columns.
USER = "user_pseudonym"
TS = "ts"
RUN_ID = "run_id"
# Quasi-identifiers are defined where they are generalized.
from privacy.generalize import AGE_BAND, QUASI_IDENTIFIERS, REGION, SIGNUP_MONTH  # noqa: E402,F401
