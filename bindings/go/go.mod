module libserl/serl

go 1.19
