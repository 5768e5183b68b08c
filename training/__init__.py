"""Training-side code for promofilter: corpus, baselines, evaluation, model building.

Run from a checkout; needs the ``train`` extra. Imports ``promofilter`` (never
the other way round) so that segmentation is one shared piece of code.
"""
