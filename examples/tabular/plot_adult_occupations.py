"""
Few-shot income prediction for a new occupation
===============================================

The adult census table, one task per occupation. A ``Pipeline`` encodes the
columns and meta-trains a prototypical network; ``GridSearchCV`` with
``GroupKFold`` tunes it across occupations; the tuned model then adapts to an
occupation it never saw, from 5 labelled people per class.
"""

# %%
# Long format: one row per person, the task column names the occupation.
import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.model_selection import GridSearchCV, GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from skmeta import ProtoNetClassifier
from skmeta.datasets import load_adult_tasks

df = load_adult_tasks(return_frame=True)
new_occupation = "Tech-support"
train = df[df["occupation"] != new_occupation].groupby(["occupation", "income"]).head(200)
new = df[df["occupation"] == new_occupation]
X, y = train.drop(columns="income"), train["income"]

# %%
# Encode features; pass the task column through by name.
numeric = X.select_dtypes("number").columns.tolist()
categorical = [c for c in X.columns if c not in numeric + ["occupation"]]
preprocess = ColumnTransformer(
    [
        ("numeric", StandardScaler(), numeric),
        ("categorical", OneHotEncoder(handle_unknown="ignore", sparse_output=False), categorical),
        ("task", "passthrough", ["occupation"]),
    ],
    verbose_feature_names_out=False,
).set_output(transform="pandas")
pipe = make_pipeline(
    preprocess,
    ProtoNetClassifier(task_column="occupation", max_epochs=3, n_episodes=100, random_state=0),
)

# %%
# Tune across occupations: each fold holds whole occupations out, and the
# score is the episodic one (adapt on 5 shots, score the rest).
search = GridSearchCV(
    pipe,
    {"protonetclassifier__module__hidden_sizes": [(32,), (64, 64)]},
    cv=GroupKFold(3),
)
search.fit(X, y, groups=X["occupation"])
print("best:", search.best_params_, f"episodic accuracy {search.best_score_:.3f}")

# %%
# Adapt to the new occupation from 5 labelled rows per class.
rng = np.random.default_rng(0)
support = np.concatenate(
    [rng.choice(np.flatnonzero(new["income"].to_numpy() == c), 5, replace=False)
     for c in ("<=50K", ">50K")]
)
query = np.setdiff1d(np.arange(len(new)), support)
fitted = search.best_estimator_
encode, meta = fitted[:-1], fitted[-1]
X_new = new.drop(columns="income")
clf = meta.adapt(encode.transform(X_new.iloc[support]), new["income"].iloc[support])
accuracy = clf.score(encode.transform(X_new.iloc[query]), new["income"].iloc[query])
print(f"{new_occupation}: accuracy {accuracy:.3f} on {len(query)} people from 10 labelled ones")
