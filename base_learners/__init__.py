"""Level 0: the learner registry (MesoNets and timm families), input views, augmentation, training
and prediction, and the learner x fold out-of-fold units."""
