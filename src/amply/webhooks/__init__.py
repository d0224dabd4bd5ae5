"""Events from Stripe (and the sandbox that plays Stripe) applied to donations and wallets."""
