"""Operating the platform: the automation-condition sensor, run-failure alerting, the history audit."""
