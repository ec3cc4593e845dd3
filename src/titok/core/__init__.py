"""Infrastructure every other wing stands on: errors, the run directory and its journal, fault
points, several processes, batch sizes, dtypes, progress, threads, settings, data rows."""
