/*
 * `train predict model=CHECKPOINT source=IMAGE_OR_FOLDER [key=value]...`:
 * detection on images with a trained checkpoint (see predict.c).
 */
#ifndef TRAINYARD_PREDICT_H
#define TRAINYARD_PREDICT_H

/* Run the predict command; argv[1] is "predict". Returns the exit
 * status: 0, 1 when the model or an image failed, 2 for invalid
 * arguments. */
int predict_main(int argc, char **argv);

#endif
