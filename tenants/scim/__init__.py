"""SCIM 2.0 provisioning (RFC 7643/7644) per tenant, on django-scim2: tokens, users, groups."""
