"""Raw Sensor.Community snapshots, the `aqi_readings` history, its checks and the snapshot sensors."""
