// Capture what the process writes to fd 2 (stderr) between construction and text().
#ifndef COIL_TEST_STDERR_CAPTURE_H
#define COIL_TEST_STDERR_CAPTURE_H

#include <stdio.h>
#include <unistd.h>

#include <string>

class StderrCapture {
  public:
    StderrCapture()
    {
        fflush(stderr);
        tmp_ = tmpfile();
        saved_ = dup(2);
        dup2(fileno(tmp_), 2);
    }
    ~StderrCapture()
    {
        restore();
        fclose(tmp_);
    }
    // Stop capturing (idempotent) and return everything captured.
    std::string text()
    {
        restore();
        std::string s;
        rewind(tmp_);
        char buf[4096];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, tmp_)) > 0)
            s.append(buf, n);
        return s;
    }

  private:
    void restore()
    {
        if (saved_ < 0)
            return;
        fflush(stderr);
        dup2(saved_, 2);
        close(saved_);
        saved_ = -1;
    }
    FILE *tmp_;
    int saved_;
};

#endif
