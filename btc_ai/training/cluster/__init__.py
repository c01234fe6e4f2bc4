"""The Ray cluster path of the training floor: where a cluster is (``address``, no Ray needed to read one),
the connection that starts or joins it (``connection``) and the evaluator whose actors score the population
(``evaluator``). Only ``connection`` and ``evaluator`` import ray, and only when a training asks for
``EVALUATOR=ray``: ``import btc_ai`` and a local training never load it."""
