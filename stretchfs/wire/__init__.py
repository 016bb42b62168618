"""What the roles say to each other: formats shared by master, prisms and stores."""
