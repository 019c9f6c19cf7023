"""DNN → SNN conversion: a trained DNN's layers are read into stages (:mod:`.stages`) and become a
quantized Loihi SNN (:mod:`.dnn`)."""
