# The CUTLASS grouped GEMM (kernels/cuda/grouped_gemm.cu): headers only, never vendored. Looked for in
# MOE_CUTLASS_DIR, then $CUTLASS_DIR, then a python3 `cutlass_library` package (the nvidia-cutlass wheel,
# which scripts/deps.sh fetches on GPU machines). Not found (CI): the file is not compiled and the experts
# keep cuBLAS; ffn_dev then has no swiglu.
set(MOE_HAVE_CUTLASS OFF CACHE INTERNAL "the CUTLASS grouped GEMM is built (read by scripts/gpu-bundle.sh)")
if(NOT MOE_WITH_CUTLASS STREQUAL "OFF")
  set(moe_cutlass_roots ${MOE_CUTLASS_DIR})
  if(DEFINED ENV{CUTLASS_DIR})
    list(APPEND moe_cutlass_roots $ENV{CUTLASS_DIR})
  endif()
  if(DEFINED ENV{XDG_CACHE_HOME})
    set(moe_cache $ENV{XDG_CACHE_HOME}/moebench)
  else()
    set(moe_cache $ENV{HOME}/.cache/moebench)
  endif()
  file(GLOB moe_cached LIST_DIRECTORIES true ${moe_cache}/nvidia-cutlass-*) # scripts/deps.sh puts it there
  list(APPEND moe_cutlass_roots ${moe_cached})
  if(NOT moe_cutlass_roots)
    execute_process(COMMAND python3 -c "import cutlass_library, os; print(os.path.dirname(cutlass_library.__file__))"
                    OUTPUT_VARIABLE moe_cl OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET TIMEOUT 20)
    if(moe_cl)
      list(APPEND moe_cutlass_roots ${moe_cl})
    endif()
  endif()
  foreach(r ${moe_cutlass_roots})
    foreach(sub "" include source/include cutlass_library/source/include)
      if(NOT MOE_CUTLASS_INCLUDE AND EXISTS "${r}/${sub}/cutlass/cutlass.h" AND EXISTS "${r}/${sub}/cute/tensor.hpp")
        get_filename_component(MOE_CUTLASS_INCLUDE "${r}/${sub}" ABSOLUTE)
      endif()
    endforeach()
  endforeach()
  if(MOE_CUTLASS_INCLUDE)
    file(STRINGS "${MOE_CUTLASS_INCLUDE}/cutlass/version.h" moe_cl_major REGEX "define CUTLASS_MAJOR [0-9]+")
    string(REGEX MATCH "[0-9]+" moe_cl_major "${moe_cl_major}")
    if(moe_cl_major LESS 4)
      message(WARNING "moebench: CUTLASS at ${MOE_CUTLASS_INCLUDE} is major version ${moe_cl_major}; 4 or later is needed")
      unset(MOE_CUTLASS_INCLUDE)
    endif()
  endif()
  if(MOE_CUTLASS_INCLUDE)
    set(MOE_HAVE_CUTLASS ON CACHE INTERNAL "the CUTLASS grouped GEMM is built (read by scripts/gpu-bundle.sh)")
  elseif(MOE_WITH_CUTLASS STREQUAL "ON")
    message(FATAL_ERROR "MOE_WITH_CUTLASS=ON but no CUTLASS headers: give -DMOE_CUTLASS_DIR=... (scripts/deps.sh fetches them)")
  endif()
endif()
message(STATUS "moebench: CUTLASS grouped GEMM ${MOE_HAVE_CUTLASS} ${MOE_CUTLASS_INCLUDE}")

if(MOE_HAVE_CUTLASS)
  # its own object library: Hopper SASS only (the TMA + WGMMA kernels exist for sm_90a alone), so the one
  # expensive file is compiled once
  add_library(moe_grouped_gemm OBJECT kernels/cuda/grouped_gemm.cu)
  set_target_properties(moe_grouped_gemm PROPERTIES CUDA_ARCHITECTURES 90a-real CUDA_STANDARD 17
                        CUDA_STANDARD_REQUIRED ON)
  target_include_directories(moe_grouped_gemm SYSTEM PRIVATE ${MOE_CUTLASS_INCLUDE})
  target_include_directories(moe_grouped_gemm PRIVATE ${MOE_ROOM_DIRS} ${CMAKE_SOURCE_DIR}/kernels
                             ${CMAKE_SOURCE_DIR}/kernels/cuda)
  # NDEBUG whatever the build type: CUTLASS's device asserts are calls, across which ptxas serialises wgmma
  target_compile_definitions(moe_grouped_gemm PRIVATE _GNU_SOURCE MOE_HAVE_CUTLASS NDEBUG)
  target_compile_options(moe_grouped_gemm PRIVATE --expt-relaxed-constexpr)
  target_link_libraries(moe_grouped_gemm PRIVATE CUDA::cudart)
  target_sources(moecore PRIVATE $<TARGET_OBJECTS:moe_grouped_gemm>)
  target_compile_definitions(moecore PRIVATE MOE_HAVE_CUTLASS)
endif()
