Console.WriteLine("routereplay");
