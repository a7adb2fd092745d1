"""Augmentation: every pipeline that turns a decoded image into a training or evaluation crop, and the test-time
views; the names here are torch-free (train.py's parser and grid.py plan read them without importing torch).

Modules: `transforms` (the albumentations pipelines: the paper's crop and flips, RandAugment, AugMix, Kaggle-style,
Appendix F's less and more augmentation for APTOS, the evaluation view, seeding, normalisation on the device, TTA
views), `gpu` (the paper's crop and flips resampled on the device for a whole batch, drawing exactly what
`transforms` draws).
"""
AUGMENTATIONS = ("paper", "none", "randaugment", "augmix", "kaggle", "aptos-kaggle", "appendix-f-less",
                 "appendix-f-more")
AUGMENTATION_HELP = {
    "paper": "the paper's recipe: RandomResizedCrop(scale 0.65-1, ratio 3/4-4/3) + the dataset's flips",
    "none": "no augmentation: the evaluation transform (short-side resize + centre crop), for ablations",
    "randaugment": "paper recipe + RandAugment (2 ops at magnitude 9 of 30, torchvision's scale)",
    "augmix": "paper recipe + AugMix (3 chains of depth 1-3, severity 3, Dirichlet(1)/Beta(1,1) mixing)",
    "kaggle": "paper crop + flips (all 8 dihedral views where both flips are allowed) + affine + colour jitter",
    "aptos-kaggle": "paper crop + both flips + rotation by any angle + colour jitter (0.2, 0.2, 0.2, 0.1) as "
                    "torchvision's ColorJitter: appendix-f-more with a vertical flip, which a rotation by any angle "
                    "after a horizontal flip already covers (the same distribution of views)",
    "appendix-f-less": "the paper's Appendix F 'less augmentation': \"only ... random resize crop with at least "
                       "0.65 area and horizontal flips\" (whatever the dataset's own flips); use it at 512 px",
    "appendix-f-more": "the paper's Appendix F augmentation: appendix-f-less's crop and horizontal flips + \"random "
                       "rotations\" (any angle) + \"color jitter (brightness=0.2, contrast=0.2, saturation=0.2, "
                       "hue=0.1)\"; use it at 512 px (\"random resize crop to 512\")",
}
TTA_MODES = ("none", "flips", "dihedral")
