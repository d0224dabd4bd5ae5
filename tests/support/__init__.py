"""Test support code that is not itself a test: the Stripe-protocol server and its recordings."""
