"""Names people give config keys that are not ours: other tools' names for the same knobs, and the
command-line settings that are flags rather than config keys (the config's unknown-key hint uses both)."""

from __future__ import annotations

# Names other tools give these knobs (and the docs' examples); difflib cannot see EPOCHS -> EPISODES (shown as
# GENERATIONS, which is accepted as it is: btc_ai.domain.config.KEY_ALIASES).
SYNONYMS = {
    "EPISODES": ("EPOCHS", "EPOCH", "N_GENERATIONS", "NUM_GENERATIONS", "ITERATIONS", "ITERS",
                 "N_ITER", "N_ITERATIONS", "STEPS", "NUM_EPOCHS", "N_EPOCHS", "MAX_GENERATIONS", "GENS"),
    "ES_POPULATION": ("POPULATION", "POPULATION_SIZE", "POP_SIZE", "POP", "NPOP", "N_POP", "POPSIZE",
                      "BATCH_SIZE"),
    "RAY_WORKERS": ("NUM_WORKERS", "WORKERS", "N_WORKERS", "RAY_NUM_WORKERS"),
    "EVALUATOR": ("BACKEND", "EXECUTOR", "DISTRIBUTED"),
    "LEARNING_RATE": ("LR", "ALPHA", "STEP_SIZE", "STEPSIZE", "ETA"),
    "SIGMA": ("NOISE_STD", "STD", "NOISE", "NOISE_SCALE", "PERTURBATION", "STDDEV", "NOISE_STDDEV"),
    "HIDDEN_SIZE": ("HIDDEN", "HIDDEN_UNITS", "HIDDEN_DIM", "UNITS", "WIDTH", "NEURONS", "HIDDEN_NEURONS"),
    "HIDDEN_LAYERS": ("LAYERS", "N_LAYERS", "NUM_LAYERS", "DEPTH", "N_HIDDEN_LAYERS"),
    "WEIGHT_DECAY": ("L2", "DECAY", "L2_COEFF", "WD"),
    "MAX_STEPS_PER_EPISODE": ("EPISODE_LENGTH", "MAX_STEPS", "EPISODE_STEPS", "HORIZON", "MAX_EPISODE_LENGTH"),
    "FEE_BPS": ("FEE", "FEES", "COMMISSION", "COMMISSION_BPS", "TRADING_FEE", "FEE_RATE"),
    "SLIPPAGE_BPS": ("SLIPPAGE", "SPREAD", "SPREAD_BPS"),
    "TIMEFRAME": ("INTERVAL", "BAR_SIZE", "FREQ", "FREQUENCY", "RESOLUTION", "CANDLE", "GRANULARITY", "PERIOD"),
    "LOOKBACK": ("WINDOW", "WINDOW_SIZE", "LOOK_BACK", "HISTORY"),
    "BUCKET": ("PRESET", "STYLE", "STRATEGY", "TRADING_STYLE", "MODE"),
    "SEED": ("RANDOM_SEED", "RNG_SEED", "RANDOM_STATE"),
    "EARLY_STOP_PATIENCE": ("PATIENCE", "EARLY_STOPPING"),
    "MIN_CHECKPOINT_INTERVAL": ("CHECKPOINT_INTERVAL", "SAVE_EVERY", "CHECKPOINT_EVERY", "CHECKPOINT_FREQ"),
    "VALIDATION_FRACTION": ("VAL_FRACTION", "VALIDATION_SPLIT", "VAL_SPLIT"),
    "TEST_FRACTION": ("TEST_SPLIT", "HOLDOUT", "HOLDOUT_FRACTION"),
}
# command-line settings people put into a config file: not config keys, but flags
FLAG_NAMES = {"DATA_PATH": "--data_path", "DATA": "--data_path", "DATA_FILE": "--data_path", "CONFIG": "--config",
          "MAX_RETRIES": "--max_retries", "CHECKPOINT_DIR": "--checkpoint_dir", "TRACKING_URI": "--tracking-uri",
          "EXPERIMENT": "--experiment", "DATE_FORMAT": "--date-format", "RESUME": "btc-ai resume REF",
          "RAY_ADDRESS": "--ray-address"}
