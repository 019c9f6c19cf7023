"""DNN → SNN conversion: a trained DNN's layers become a quantized Loihi SNN (:mod:`.dnn`)."""
