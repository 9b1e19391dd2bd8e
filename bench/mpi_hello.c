/*
 * MPI equivalent of prun's `hello` example, used by bench/startup.sh to
 * compare job start-up time against Open MPI and MPICH.
 *
 * Each rank prints exactly one line:
 *     hello from rank R of N on HOST
 * then all ranks meet at a barrier and finalize.
 *
 * Build: mpicc.openmpi -O2 -o mpi_hello bench/mpi_hello.c
 *        mpicc.mpich   -O2 -o mpi_hello bench/mpi_hello.c
 */
#include <mpi.h>
#include <stdio.h>

int main(int argc, char **argv)
{
    int rank = 0, size = 0, len = 0;
    char host[MPI_MAX_PROCESSOR_NAME];

    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Get_processor_name(host, &len);
    host[len < MPI_MAX_PROCESSOR_NAME ? len : MPI_MAX_PROCESSOR_NAME - 1] = '\0';

    printf("hello from rank %d of %d on %s\n", rank, size, host);
    fflush(stdout);

    MPI_Barrier(MPI_COMM_WORLD);
    MPI_Finalize();
    return 0;
}
