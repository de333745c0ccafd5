"""Plan a study into jobs and run them: one job function (a compress phase, then a measure phase), executed here or
as Ray tasks across a cluster (`compressbench.runner.executors`)."""
