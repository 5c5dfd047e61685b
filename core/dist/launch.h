// Starting and ending a distributed run. bonsai speaks MPI (Open MPI, as
// Debian packages it): `mpirun -np 4 bonsai train ...` starts four processes
// that find each other through MPI_COMM_WORLD; init() makes that world the
// communicator training uses (dist::world()).
//
//   dist::init("auto");          // MPI if mpirun started us, else a single process
//   ... run_experiment(...) ...  // reads dist::world()
//   dist::finalize();
//
// MPI is optional at build time (meson -Dmpi=disabled, or no libopenmpi-dev):
// such a build runs single-process and refuses a multi-rank launch rather
// than letting N copies train alone.
#pragma once

#include <string>

#include "core/dist/communicator.h"

namespace bonsai::dist {

// Whether this build links MPI.
bool mpi_available();

// The world size an MPI launcher announced in the environment
// (OMPI_COMM_WORLD_SIZE from Open MPI's mpirun, PMI_SIZE from MPICH/Hydra
// and Intel MPI), or 0 when no launcher started this process.
int launcher_world_size();

// mode "auto": MPI when a launcher started this process, else single
// process; "mpi": MPI always (a singleton run without mpirun is a world of
// one); "none": single process even under mpirun. Sets and returns world().
// A second call returns the world already chosen.
Communicator& init(const std::string& mode);

// Ends MPI if init() started it; every rank calls it (normal exit, or
// after a CollectiveError that every rank saw).
void finalize();

}  // namespace bonsai::dist
