"""Fine-tuning, as train.py runs it. In the order a command goes through them:

    recipe    the paper's recipe: grid, defaults, LP-FT's settings, the packed axes (torch-free)
    options   train.py's parser and TrainOptions, typed once (torch-free; grid.py checks options with it)
    config    each run's RunConfig and run id; plan_runs for grid.py (torch-free)
    identity  the run id: an allow-list of what changes a run's numbers (torch-free)
    command   one command: skip finished runs, train the rest in packs, LP-FT's two phases
    lpft      linear probe, then fine-tuning (section 5.2)
    pipeline  the input pipeline of a pack: readers, loaders, the models' input
    run       one run: model, optimizer, scheduler, random stream, progress, saved state
    record    the run record as training writes it
    loop      the epochs of a pack: train, evaluate, keep the best epoch, finish
    engine    the per-batch code train.py and evaluate.py share: datasets, loaders, one epoch, prediction
"""
