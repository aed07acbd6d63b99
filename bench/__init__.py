"""`python -m bench`: load scenarios against the gateway, with the ceilings they are judged by."""
