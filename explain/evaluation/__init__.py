"""Scoring the maps of any ``nn.Module``: faithfulness, ROAD, ground truth, sanity checks."""
