# find_package(serl) → the imported target serl::serl (static libserl,
# headers serl.h and serl.hpp).
get_filename_component(_serl_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
include(CMakeFindDependencyMacro)
find_dependency(Threads)
if(NOT TARGET serl::serl)
  add_library(serl::serl STATIC IMPORTED)
  set_target_properties(serl::serl PROPERTIES
    IMPORTED_LOCATION "${_serl_prefix}/lib/libserl.a"
    INTERFACE_INCLUDE_DIRECTORIES "${_serl_prefix}/include"
    INTERFACE_LINK_LIBRARIES "Threads::Threads;${CMAKE_DL_LIBS};m")
endif()
unset(_serl_prefix)
