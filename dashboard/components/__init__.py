"""Self-contained parts of pages (Streamlit), each drawn by one call from its page."""
