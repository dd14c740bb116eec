"""The dashboard: server-rendered pages and their htmx fragments, one module per feature.

Every view starts with one permission helper from common.py, then calls one service or selector.
An htmx request gets only the fragment (an included `_*.html` template); a plain request gets the
whole page."""
