// Example programs, by the extension of a language's source file. Each
// has a title, code, and tests for the tests mode (stdin, expected).

export const examples = {
  '.py': [
    { title: 'Ask a name', code: 'name = input("What is your name? ")\nprint(f"Hello, {name}!")\n',
      tests: [{ stdin: 'Ada\n', expected: 'What is your name? Hello, Ada!\n' }] },
    { title: 'Sum two numbers', code: 'a, b = map(int, input().split())\nprint(a + b)\n',
      tests: [{ stdin: '1 2\n', expected: '3\n' }, { stdin: '10 -4\n', expected: '6\n' }] },
    { title: 'FizzBuzz', code: 'for i in range(1, 16):\n    print("Fizz" * (i % 3 == 0) + "Buzz" * (i % 5 == 0) or i)\n', tests: [] },
  ],
  '.c': [
    { title: 'Ask a name', code: '#include <stdio.h>\n\nint main(void) {\n    char name[64];\n    printf("What is your name? ");\n    if (scanf("%63s", name) == 1)\n        printf("Hello, %s!\\n", name);\n    return 0;\n}\n',
      tests: [{ stdin: 'Ada\n', expected: 'What is your name? Hello, Ada!\n' }] },
    { title: 'Sum two numbers', code: '#include <stdio.h>\n\nint main(void) {\n    long a, b;\n    if (scanf("%ld %ld", &a, &b) == 2)\n        printf("%ld\\n", a + b);\n    return 0;\n}\n',
      tests: [{ stdin: '1 2\n', expected: '3\n' }, { stdin: '10 -4\n', expected: '6\n' }] },
    { title: 'A compile error', code: '#include <stdio.h>\n\nint main(void) {\n    printf("%d\\n", answer);\n    return 0;\n}\n', tests: [] },
  ],
  '.cpp': [
    { title: 'Ask a name', code: '#include <iostream>\n#include <string>\n\nint main() {\n    std::string name;\n    std::cout << "What is your name? " << std::flush;\n    std::cin >> name;\n    std::cout << "Hello, " << name << "!\\n";\n}\n',
      tests: [{ stdin: 'Ada\n', expected: 'What is your name? Hello, Ada!\n' }] },
    { title: 'Sum two numbers', code: '#include <iostream>\n\nint main() {\n    long a, b;\n    std::cin >> a >> b;\n    std::cout << a + b << "\\n";\n}\n',
      tests: [{ stdin: '1 2\n', expected: '3\n' }, { stdin: '10 -4\n', expected: '6\n' }] },
  ],
  '.js': [
    { title: 'Ask a name', code: 'const readline = require("readline");\nconst rl = readline.createInterface({ input: process.stdin, output: process.stdout });\nrl.question("What is your name? ", (name) => {\n  console.log(`Hello, ${name}!`);\n  rl.close();\n});\n',
      tests: [{ stdin: 'Ada\n', expected: 'What is your name? Hello, Ada!\n' }] },
    { title: 'Sum two numbers', code: 'const [a, b] = require("fs").readFileSync(0, "utf8").trim().split(/\\s+/).map(Number);\nconsole.log(a + b);\n',
      tests: [{ stdin: '1 2\n', expected: '3\n' }, { stdin: '10 -4\n', expected: '6\n' }] },
  ],
  '.rb': [
    { title: 'Ask a name', code: 'print "What is your name? "\nname = gets.chomp\nputs "Hello, #{name}!"\n',
      tests: [{ stdin: 'Ada\n', expected: 'What is your name? Hello, Ada!\n' }] },
    { title: 'Sum two numbers', code: 'a, b = gets.split.map(&:to_i)\nputs a + b\n',
      tests: [{ stdin: '1 2\n', expected: '3\n' }, { stdin: '10 -4\n', expected: '6\n' }] },
  ],
  '.sh': [
    { title: 'Ask a name', code: 'read -r -p "What is your name? " name\necho "Hello, $name!"\n',
      tests: [{ stdin: 'Ada\n', expected: 'Hello, Ada!\n' }] },
    { title: 'Sum two numbers', code: 'read -r a b\necho $((a + b))\n',
      tests: [{ stdin: '1 2\n', expected: '3\n' }, { stdin: '10 -4\n', expected: '6\n' }] },
  ],
};

// A language without examples starts empty, with one test to fill in.
export const blank = { title: 'Empty program', code: '', tests: [{ stdin: '', expected: '' }] };

export function examplesFor(ext) {
  return examples[ext] || [blank];
}
