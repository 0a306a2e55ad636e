"""Running the platform as a service: a throwaway PostgreSQL cluster and the three Dagster processes."""
