"""Every use of BentoML's private API (``bentoml._internal``, ``_bentoml_impl``) in the project, and why.

BentoML 1.4 has no public API for these needs; each is kept here, in one place, and
``tests/test_bentoml_private.py`` checks that every name still exists with the shape used, so a BentoML upgrade that
breaks one fails that test with the name, not a request or a build somewhere else.
"""

from __future__ import annotations
