"""Plan a study into jobs and run them: one job function, executed locally (or on Ray, later)."""
