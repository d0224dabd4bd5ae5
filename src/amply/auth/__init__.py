"""Who is calling: sign-in sessions and API keys recognised, the caller a request carries,
passwords, tokens and the security events every domain records.

It sits below the domains (which ask it who is calling) and above the ledger; signing up,
logging in and managing sessions and keys are the ``identity`` domain's.
"""
