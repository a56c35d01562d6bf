"""Training pipeline of muon_ad_ros, installed as the package ``muon_ad_training``."""
