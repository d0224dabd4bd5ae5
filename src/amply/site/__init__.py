"""The public transparency site: pages per organisation, in-browser verification, giving and
the donor's receipt (docs/public-site.md)."""
