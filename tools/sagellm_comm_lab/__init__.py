"""Developer tools shared by the plugins' tests; never shipped in a wheel. ``netns``: simulated hosts."""
