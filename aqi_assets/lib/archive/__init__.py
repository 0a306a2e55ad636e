"""History before day one: the Sensor.Community archive (one CSV per sensor per day), fetched and merged."""
