"""Tests for repeatlens.data."""
