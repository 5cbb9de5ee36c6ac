import platform
import sys

print("Hello from a microbox microVM!")
print("kernel", platform.release(), "· python", platform.python_version())
print("arguments:", sys.argv[1:])
