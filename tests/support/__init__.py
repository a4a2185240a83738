"""Test support shared by the test tiers and the benches (not part of the product)."""
