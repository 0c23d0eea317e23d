"""The ``Parameters`` entries every episodic learner shares, written once.

An algorithm's docstring is its own parameters, then :func:`episodic_parameters`.
"""

_EPISODIC = """    criterion : torch.nn.Module class or None, default=None
        {criterion}
    optimizer : torch.optim.Optimizer class, default=torch.optim.Adam
        The meta-optimizer; tune it with ``optimizer__*`` parameters.
    lr : float, default={lr}
        Meta learning rate.
    max_epochs : int, default={max_epochs}
        Passes of meta-training.
    n_episodes : int, default=200
        Episodes per epoch.
    meta_batch_size : int, default=8
        Episodes per meta-gradient step.
{ways}    n_shots : int or tuple of int, default=5
        Support rows {per} in an episode. A tuple or list such as ``(1, 5,
        10)`` draws one shot count per training episode, uniformly (seeded);
        a meta-batch of mixed shot counts is padded to the largest and the
        padding masked out. ``score`` and the episodic scorers adapt on the
        largest.
    n_queries : int, default=15
        Query rows {per} in a training episode.
    class_balance : {{"balanced", "natural"}}, default="balanced"
        Classification only (regression episodes are never stratified).
        "balanced" draws ``n_shots`` support and ``n_queries`` query rows
        per class; "natural" draws ``n_shots * n_ways`` and ``n_queries *
        n_ways`` rows in all, in each task's own class proportions, so that
        the base rate learnt is the tasks' own. Every class still gets one
        support row at least. ``score`` draws its support sets alike.
    train_split : callable or None, default=TaskSplit(0.2)
        Splits the tasks into meta-training and meta-validation tasks;
        None meta-validates on nothing.
    callbacks : list of skorch callbacks or None, default=None
        E.g. ``EarlyStopping(monitor="valid_score", lower_is_better=False)``,
        ``ProgressBar()``, ``Checkpoint()``, ``LRScheduler()``.
    task_column : str or None, default=None
        In long format, the column of ``X`` that names each row's task.
    strict_episodes : bool, default=False
        Whether every task must fill whole episodes (``n_shots + n_queries``
        rows {per}). By default a smaller class gives fewer shots and
        queries, episodes of a meta-batch are padded and the padding masked
        out, and tasks that cannot give an episode at all are left out with
        a warning.
    replay_size : int, default=100
        Lifelong meta-learning: past tasks kept (a uniform sample of every
        task trained on, reservoir sampling) and trained on again with the
        new ones by each ``partial_fit``, at the same cost per epoch, so that
        what was learned of them is not forgotten. 0 trains on the new tasks
        alone. The kept tasks are ``replay_``; they are stored with the model.
    ewc : float, default=0.0
        Lifelong meta-learning: the pull of later training toward the
        weights at the end of each ``fit`` or ``partial_fit``, weighted by
        each weight's importance to the tasks trained on then (elastic weight
        consolidation; the importance is the mean squared gradient of an
        episode's loss, divided by its mean over the weights). 0: no pull;
        about 1 keeps much of an earlier family while learning a
        conflicting one (``history_`` records each epoch's ``stage``).
    device : {{"auto", "cpu", "cuda"}} or torch.device, default="auto"
        "auto" uses CUDA when present.
    random_state : int, RandomState instance or None, default=None
        Seeds the backbone's initial weights and the episodes.
    verbose : int, default=0
        1 prints one line per epoch.
    warm_start : bool, default=False
        Whether ``fit`` continues from the current weights.
{extra}    **kwargs : dict
        Routed parameters: ``module__*``, ``optimizer__*``, ``callbacks__*``.
"""

#: The entries of the lifelong parameters, for templates that are not this one.
#: ... and the penalty alone, for learners that cannot replay (one head per task).
EWC_PARAMETERS = """    ewc : float, default=0.0
        Lifelong meta-learning: the pull of later training toward the
        weights at the end of each ``fit`` or ``partial_fit``, weighted by
        each weight's importance to the tasks trained on then (elastic weight
        consolidation; the importance is the mean squared gradient of an
        episode's loss, divided by its mean over the weights). 0: no pull;
        about 1 keeps much of an earlier family while learning a
        conflicting one (``history_`` records each epoch's ``stage``).
"""
LIFELONG_PARAMETERS = """    replay_size : int, default=100
        Lifelong meta-learning: past tasks kept (a uniform sample of every
        task trained on, reservoir sampling) and trained on again with the
        new ones by each ``partial_fit``, at the same cost per epoch, so that
        what was learned of them is not forgotten. 0 trains on the new tasks
        alone. The kept tasks are ``replay_``; they are stored with the model.
""" + EWC_PARAMETERS

_WAYS = """    n_ways : int or None, default=None
        Classes per episode (and the width of the output layer, where the
        learner has one); None takes all classes of each task (then every
        task must have as many).
"""


def episodic_parameters(*, criterion, classification, lr="1e-3", max_epochs="20", extra=""):
    """The shared entries, from ``criterion`` to ``**kwargs``, of a classifier or a regressor.

    Parameters
    ----------
    criterion : str
        The text after ``criterion : ...``: what the loss is and its default.
    classification : bool
        Adds ``n_ways``, and counts shots and queries per class.
    lr, max_epochs : str
        The defaults, as written.
    extra : str
        Entries after ``warm_start`` (a regressor's ``standardize_targets``).

    Returns
    -------
    str

    Examples
    --------
    >>> text = episodic_parameters(criterion="None is MSE.", classification=False)
    >>> "    n_ways :" in text, "rows of the task in an episode" in text, text.startswith("    criterion")
    (False, True, True)
    """
    return _EPISODIC.format(
        criterion=criterion, lr=lr, max_epochs=max_epochs, ways=_WAYS if classification else "",
        per="per class" if classification else "of the task", extra=extra,
    )


def fitted_attributes(*, classification, own="", prior=True, fixed_ways=True):
    """The ``Attributes`` section: ``own`` entries (``module_`` first), then the shared ones.

    Parameters
    ----------
    classification : bool
        ``valid_score`` is accuracy, and ``n_ways_`` is listed; else R².
    own : str
        The learner's own entries, indented as entries are.
    prior : bool, default=True
        Whether to list ``prior_``.
    fixed_ways : bool, default=True
        Whether a support set must have exactly ``n_ways_`` classes (a
        learner with an output layer of that width); False for learners that
        take any number of classes when adapting.

    Returns
    -------
    str

    Examples
    --------
    >>> own = "    module_ : MLP" + chr(10)
    >>> text = fitted_attributes(classification=False, own=own)
    >>> "n_ways_" in text, "R²" in text, own in text
    (False, True, True)
    """
    score = "accuracy" if classification else "R²"
    ways = fitted_prior = ""
    if classification:
        ways = ("    n_ways_ : int\n"
                + ("        Classes per episode; a support set must have exactly as many.\n" if fixed_ways
                   else "        Classes per training episode.\n"))
    if prior:
        fitted_prior = ("    prior_ : sklearn estimator\n"
                        "        ``prior`` fitted on all training rows; only when ``prior`` is set.\n")
    return f"""
    Attributes
    ----------
{own}    history_ : skorch.History
        Per epoch: ``train_loss``, ``valid_loss``, ``valid_score`` (query
        {score} of meta-validation episodes), ``dur``, and the lifelong
        ``stage`` (0 for ``fit``, one more for each ``partial_fit``).
    n_features_in_ : int
        Number of features.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Feature names, when the tasks had string column names.
{ways}    replay_ : list of dict
        The reservoir of past tasks (``X``, ``y``, ``name``) that
        ``partial_fit`` trains on again.
    stage_ : int
        Calls of ``partial_fit`` since ``fit``.
{fitted_prior}"""
