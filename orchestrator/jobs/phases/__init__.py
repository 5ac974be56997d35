"""One wheel job, one module per phase: `inputs` and `context` (what it gets),
`system`, `fetch`, `build`, `verify`, and `run`, which runs them in order and
returns the job's record."""
