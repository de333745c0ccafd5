"""What drives jobs for a user: a study (`study`), compressing the user's own model (`compress_model`), checking a
handed-back artifact again (`verify`) and the Optuna search (`search`, its space in `search_space`); the recipes
compress and the search start from are the recipe table's shortlists, kept where the input can take them
(`shortlists`). Each states its policy for stored runs (`compressbench.runner.drive.Policy`) and leaves running and
storing to the driver."""
