"""What every domain shares: the storage resource and configuration from the environment."""
