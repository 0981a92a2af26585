"""`pallet`: docker's verbs and flags, talking only to pallet.client."""
