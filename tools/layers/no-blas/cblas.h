/* tools/layers/no-blas/cblas.h — poison.
** This directory comes first on the include path of every layer that must not use
** BLAS (Makefile, "Layers"), so an include of this name stops the build there. */
#error "layering: this layer must not include cblas.h (BLAS is server/core's; DESIGN.md)"
