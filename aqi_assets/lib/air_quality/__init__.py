"""Air quality: the snapshot periods, the raw lake, normalisation, indices, probing, checks and summaries."""
