"""Who is calling and whether they may: keys, permissions, input limit, rate limit, funds."""
