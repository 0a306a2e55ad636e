"""Tests of the tiers domain."""
