"""Moving between one's workspaces: the list, the switcher's pages and the one-time sign-in hand-off."""
