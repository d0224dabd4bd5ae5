"""The public site, in a real browser."""  # noqa: A005 - tests.site, never imported as `site`
